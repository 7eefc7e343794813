"""Synthetic traffic: signed datagrams for many realistic clients and servers.

Shared by the demo and the benchmarks. Client addresses are public-looking
IPv4 and IPv6 unicast addresses whose popularity follows a Zipf law (a few
clients take much of the traffic, as on a real site); responses have
log-normal sizes and RTTs, a realistic status mix, and occasional
retransmits. Deterministic for a given seed.

    python -m collector.synth --collector 127.0.0.1:9477 --key-id 1 \
        --secret HEX --datagrams 10000 --records 10
"""
from __future__ import annotations

import argparse
import ipaddress
import random
import socket
import sys
import time

from ipr_agent import wire

TYPES = ("static", "api", "video", "download")
STATUSES = (200,) * 80 + (206,) * 4 + (304,) * 8 + (301, 302) + (404,) * 3 + (403, 500, 503)


def client_pool(n: int, rng: random.Random) -> list[str]:
    """n distinct public unicast addresses, about four IPv4 to one IPv6."""
    out, seen = [], set()
    while len(out) < n:
        if rng.random() < 0.8:
            ip = ipaddress.IPv4Address(rng.randrange(1 << 24, 224 << 24))
        else:  # 2000::/3 global unicast, /48-ish site then a host
            ip = ipaddress.IPv6Address((0x1 << 125) | (rng.getrandbits(45) << 80) | rng.getrandbits(64))
        if ip.is_global and ip not in seen:
            seen.add(ip)
            out.append(str(ip))
    return out


class Traffic:
    """Makes packed records and datagrams."""

    def __init__(self, seed: int = 1, clients: int = 50_000, servers: int = 8):
        self.rng = random.Random(seed)
        self.clients = client_pool(clients, self.rng)
        # Zipf-like popularity: weight of rank r is 1/r.
        self.weights = [1.0 / (r + 1) for r in range(clients)]
        self.cum = None
        self.servers = [f"192.0.2.{10 + i}" for i in range(servers // 2)] + \
                       [f"2001:db8:100::{10 + i:x}" for i in range(servers - servers // 2)]

    def record(self) -> wire.Record:
        rng = self.rng
        client = rng.choices(self.clients, cum_weights=self._cum())[0]
        ttype = rng.choice(TYPES)
        size = int(rng.lognormvariate(9.5 if ttype != "video" else 13, 1.5))
        rtt = int(rng.lognormvariate(10.3, 0.8))  # median ~30 ms
        segs = size // 1448 + 1
        retrans = sum(1 for _ in range(min(segs, 50)) if rng.random() < 0.01)
        return wire.Record(
            client=client, server=rng.choice(self.servers), traffic_type=ttype,
            server_port=443, status=rng.choice(STATUSES),
            flags=(wire.F_TCPINFO | wire.F_TCPINFO_SEGS | wire.F_BYTES_SENT | wire.F_DELIVERY_RATE
                   | wire.F_TLS | (wire.F_NEW_CONNECTION if rng.random() < 0.3 else 0)),
            http_version=rng.choice((11, 20, 20)), requests=1,
            duration_us=rtt * 2 + size // 10, response_bytes=size,
            wire_bytes=size + 400 + retrans * 1448, retrans_bytes=retrans * 1448,
            data_segs=segs + retrans, retrans_segs=retrans, rtt_us=rtt,
            rttvar_us=rtt // 4, min_rtt_us=int(rtt * 0.8),
            delivery_rate=int(size / max(rtt, 1) * 1e6) if size > 14480 else 1_000_000)

    def _cum(self):
        if self.cum is None:
            total, self.cum = 0.0, []
            for w in self.weights:
                total += w
                self.cum.append(total)
        return self.cum

    def packed_records(self, n: int) -> list[bytes]:
        return [self.record().pack() for _ in range(n)]


def datagrams(traffic: Traffic, count: int, per_datagram: int, key_id: int, secret: bytes,
              sender_id: int = 1, instance_id: int | None = None, first_seq: int = 1,
              time_ms: int | None = None, pool: int = 4096) -> list[bytes]:
    """``count`` signed datagrams of ``per_datagram`` records each.

    Records are drawn from a pool of ``pool`` made in advance, so making a
    million datagrams is bounded by signing, not by the random draws.
    """
    records = traffic.packed_records(min(pool, count * per_datagram))
    instance = instance_id if instance_id is not None else traffic.rng.getrandbits(64)
    now = time_ms if time_ms is not None else int(time.time() * 1000)
    out = []
    k = 0
    for i in range(count):
        batch = []
        for _ in range(per_datagram):
            batch.append(records[k % len(records)])
            k += 1
        header = wire.Header(key_id, sender_id, instance, first_seq + i, now)
        out.append(wire.encode(header, batch, secret))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m collector.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--collector", default="127.0.0.1:9477")
    p.add_argument("--key-id", type=int, default=1)
    p.add_argument("--secret", required=True, help="key secret, hex")
    p.add_argument("--sender-id", type=int, default=1)
    p.add_argument("--datagrams", type=int, default=1000)
    p.add_argument("--records", type=int, default=10, help="records per datagram")
    p.add_argument("--rate", type=float, default=0, help="datagrams per second (0: as fast as possible)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    from collector.config import parse_hostport
    host, port = parse_hostport(args.collector, "--collector")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    traffic = Traffic(args.seed, clients=2000)
    grams = datagrams(traffic, args.datagrams, args.records, args.key_id,
                      bytes.fromhex(args.secret), args.sender_id)
    start = time.monotonic()
    for i, g in enumerate(grams):
        sock.sendto(g, (host, port))
        if args.rate:
            delay = start + (i + 1) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(f"sent {len(grams)} datagrams, {len(grams) * args.records} records to [{host}]:{port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
