"""Small made-up routing and country data, in the formats ipr reads: for the
demo (``manage.py demo``) and the tests. Not real routes or allocations."""
from __future__ import annotations

# Countries the demo's address blocks are given, in turn.
DEMO_COUNTRIES = ("US", "DE", "GB", "FR", "NL", "JP", "BR", "IN", "ZA", "AU", "SE", "PL")
# The demo router's upstreams: each route is reached over one of them.
DEMO_TRANSITS = (64601, 64602, 64603)


def bird_dump(routes: list[tuple[str, str]]) -> str:
    """A BIRD 2 ``show route all`` dump: (prefix, AS path) per best route."""
    lines = ["BIRD 2.0.12 ready.", "Table master4:"]
    for prefix, path in routes:
        lines += [f"{prefix:<20} unicast [up1 2026-01-10 08:00:00] * (100) [AS{path.split()[-1]}i]",
                  "\tvia 192.0.2.1 on eth0", "\tType: BGP univ", "\tBGP.origin: IGP",
                  f"\tBGP.as_path: {path}", "\tBGP.next_hop: 192.0.2.1"]
    return "\n".join(lines) + "\n"


def demo_blocks() -> list[tuple[str, int, str]]:
    """(network, origin AS, country) for every IPv4 /8 of 1-223 and IPv6 /8 of
    2000::/3: together they cover any public unicast address."""
    blocks = [(f"{first}.0.0.0/8", 65000 + first, DEMO_COUNTRIES[first % len(DEMO_COUNTRIES)])
              for first in range(1, 224)]
    blocks += [(f"{0x20 + i:x}00::/8", 65300 + i, DEMO_COUNTRIES[(i * 5) % len(DEMO_COUNTRIES)])
               for i in range(32)]
    return blocks


def demo_routes() -> str:
    """The demo router's table (BIRD 2 text): each block from its origin AS,
    over one of the transits (some through a second AS too)."""
    routes = []
    for i, (network, origin, _) in enumerate(demo_blocks()):
        transit = DEMO_TRANSITS[i % len(DEMO_TRANSITS)]
        path = f"{transit} {origin}" if i % 4 else f"{transit} {64700 + i % 7} {origin}"
        routes.append((network, path))
    return bird_dump(routes)


def demo_delegated() -> str:
    """The demo blocks' countries as an RIR delegated statistics file."""
    blocks = demo_blocks()
    lines = [f"2.3|demo|20261201|{len(blocks)}|19700101|20261201|+0000"]
    for network, _, country in blocks:
        address, length = network.split("/")
        if ":" in address:
            lines.append(f"demo|{country}|ipv6|{address}|{length}|20200101|allocated")
        else:
            lines.append(f"demo|{country}|ipv4|{address}|{2 ** (32 - int(length))}|20200101|allocated")
    return "\n".join(lines) + "\n"
