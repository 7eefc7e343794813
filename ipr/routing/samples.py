"""Small made-up routing and country data, in the formats ipr reads: for the
demo (``manage.py demo``) and the tests. Not real routes or allocations."""
from __future__ import annotations

# Countries the demo's address blocks are given, in turn.
DEMO_COUNTRIES = ("US", "DE", "GB", "FR", "NL", "JP", "BR", "IN", "ZA", "AU", "SE", "PL")
# The demo router's upstreams: each route is reached over one of them.
DEMO_TRANSITS = (64601, 64602, 64603)
# A second router's: one transit of its own, one shared, and direct peers.
DEMO_TRANSITS_2 = (64604, 64602)
# Made-up names of the demo's transits and of the second AS some paths cross.
TRANSIT_NAMES = {64601: ("ATLAS-TRANSIT", "Atlas Transit Ltd", "GB"),
                 64602: ("MERIDIAN-IX", "Meridian Backbone GmbH", "DE"),
                 64603: ("PACIFICA-NET", "Pacifica Networks Inc.", "US"),
                 64604: ("NORDLYS", "Nordlys Carrier AB", "SE")}
_WORDS = ("Alder", "Birch", "Cedar", "Delta", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper",
          "Kestrel", "Lumen", "Maple", "Nimbus", "Orchid", "Prairie", "Quartz", "Raven", "Sierra", "Tundra")
_KINDS = ("Telecom", "Broadband", "Fibre", "Cable", "Mobile", "Hosting", "Online", "Networks", "Datacom",
          "Wireless", "Internet", "Connect")


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


def demo_routes(transits: tuple[int, ...] = DEMO_TRANSITS, peer_every: int = 0) -> str:
    """A demo router's table (BIRD 2 text): each block from its origin AS,
    over one of the transits (some through a second AS too); with
    ``peer_every`` n, every n-th block straight from its origin (a peer)."""
    routes = []
    for i, (network, origin, _) in enumerate(demo_blocks()):
        transit = transits[i % len(transits)]
        if peer_every and i % peer_every == 0:
            path = str(origin)
        else:
            path = f"{transit} {origin}" if i % 4 else f"{transit} {64700 + i % 7} {origin}"
        routes.append((network, path))
    return bird_dump(routes)


def demo_as_name(asn: int) -> tuple[str, str]:
    """A made-up (handle, long name) for any of the demo's ASes."""
    if asn in TRANSIT_NAMES:
        return TRANSIT_NAMES[asn][:2]
    if 64700 <= asn < 64720:
        word = _WORDS[asn - 64700]
        return f"{word}-TRANSIT".upper(), f"{word} Transit"
    # One pair of words per origin, in turn (65001-65223, then 65300-65331).
    i = asn - 65000 if asn < 65300 else asn - 65300 + 224
    word, kind = _WORDS[i % len(_WORDS)], _KINDS[(i // len(_WORDS)) % len(_KINDS)]
    more = f" {i // (len(_WORDS) * len(_KINDS)) + 1}" if i >= len(_WORDS) * len(_KINDS) else ""
    return f"{word}-{kind}{more}".upper().replace(" ", "-"), f"{word} {kind}{more}"


def demo_asnames() -> str:
    """Every demo AS's name as an AS names text list (RIPE NCC's asn.txt
    form: ``AS64601 HANDLE - Long name, CC``)."""
    lines = ["# Made-up names of the demo's ASes (ipr.routing.samples)."]
    for asn, (handle, name, cc) in TRANSIT_NAMES.items():
        lines.append(f"AS{asn} {handle} - {name}, {cc}")
    for asn in range(64700, 64707):
        handle, name = demo_as_name(asn)
        lines.append(f"AS{asn} {handle} - {name}, NL")
    for _, origin, cc in demo_blocks():
        handle, name = demo_as_name(origin)
        lines.append(f"AS{origin} {handle} - {name}, {cc}")
    return "\n".join(lines) + "\n"


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
