"""Real BIRD 2 and FRR bgpd on loopback, peering with each other, for the dump tests.

Four speakers on a private 127.x.y.0/24 (random per run, so parallel runs
and other tests never share an address), all on one high port:

- r1 (FRR, AS 65001) and r2 (FRR, AS 65002) originate routes, with
  route-maps that set the attributes the parsers must read back;
- c3 (FRR, AS 65000) collects both, builds an AS_SET aggregate and runs
  BGP multipath;
- b4 (BIRD 2, AS 65004) collects r1, r2 and c3's aggregate, with import
  filters that set local preference and add communities.

bgpd runs without zebra (``-Z``): nothing reaches the kernel's routing table
and no zebra is needed. BIRD has no kernel protocol for the same reason.
Next hops are rewritten to documentation addresses because FRR treats
loopback next hops as martians; BIRD resolves them through static routes
on ``lo``. Everything the tests expect is derived from the tables below,
which are also what the configurations are generated from.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRDC = shutil.which("birdc") or "/usr/sbin/birdc"
BGPD = "/usr/lib/frr/bgpd"
VTYSH = shutil.which("vtysh") or "/usr/bin/vtysh"
DEADLINE = 30.0  # seconds for sessions and routes to appear; never a measurement
PORT = 17179

AGGREGATE = "198.51.100.0/23"
V6_STATIC = "2001:db8:ffff::/48"
V4_STATIC = "203.0.113.0/25"
V4_BLACKHOLE = "203.0.113.192/26"
# b4 originates this towards c3 (a route with neither MED nor local preference).
B4_ROUTE = "198.18.0.0/15"
B4_NEXT_HOP = "203.0.113.4"
B4_COMMUNITY = "65004:1"


@dataclass
class Origination:
    """A route a speaker announces and what its export route-map makes of it."""
    prefix: str
    prepend: tuple[int, ...] = ()       # ASNs prepended after the speaker's own
    origin: str = "i"                   # 'i' or '?'


@dataclass
class Speaker:
    name: str
    asn: int
    host: int                           # last octet of its 127.x.y.N address
    next_hop4: str
    next_hop6: str
    med: int | None = None
    communities: tuple[str, ...] = ()   # standard, as 'a:b'
    large: tuple[str, ...] = ()         # large, as 'a:b:c'
    routes: list[Origination] = field(default_factory=list)


R1 = Speaker(
    "r1", 65001, 1, "203.0.113.1", "2001:db8:ffff::1", med=50,
    communities=("65001:100", "65001:200"), large=("65001:1:2",),
    routes=[Origination("10.0.0.0/8"), Origination("172.16.0.0/16"),
            Origination("192.0.2.0/24"), Origination("198.51.100.0/24"),
            # A 4-byte ASN, prepended by the network's own route-map.
            Origination("198.51.100.0/25", prepend=(4200000001, 4200000001)),
            Origination("2001:db8:1234:5678::/64"),
            Origination("2001:db8:abcd:ef01:2345::/80")])
R2 = Speaker(
    "r2", 65002, 2, "203.0.113.2", "2001:db8:ffff::2", med=0,
    routes=[Origination("192.0.2.0/24"),  # same path length as r1's: multipath at c3
            Origination("198.51.100.0/25", prepend=(64512,), origin="?"),
            Origination("198.51.101.0/24", prepend=(64512,), origin="?"),
            Origination("2001:db8:1234:5678::/64", prepend=(64512,), origin="?")])
C3 = Speaker("c3", 65000, 3, "203.0.113.3", "2001:db8:ffff::3")
B4_ASN = 65004
B4_HOST = 4
# c3 gives r2's route for this prefix local preference 200 on import.
C3_LOCAL_PREF = {"198.51.101.0/24": 200}
# b4 gives r1's routes local preference 120 and tags r2's with a community.
B4_R1_LOCAL_PREF = 120
B4_R2_COMMUNITY = "65004:2"
B4_R2_LARGE = "65004:7:7"
# What the daemons add on their own: BIRD's local preference for routes from
# eBGP peers, and the MED bgpd gives the aggregates it originates.
BIRD_DEFAULT_LOCAL_PREF = 100
AGGREGATE_MED = 0


def unavailable() -> str | None:
    """Why the daemons cannot run here, or None.

    Root is not needed: the port is above 1024, bgpd runs with -S (no user
    switch) and BIRD with no kernel protocol (tried as 'nobody').
    """
    for path in (BIRD, BIRDC, BGPD, VTYSH):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (Debian packages bird2 and frr)"
    return None


def _frr_config(me: Speaker, peers: list[tuple[str, int, bool]], lab: "Lab") -> str:
    """bgpd.conf for ``me``; peers are (address, asn, multihop)."""
    addr = lab.address(me.host)
    lines = [f"hostname {me.name}", f"log file {lab.dir / me.name / 'bgpd.log'} informational", "!"]
    # Route-maps first: bgpd would otherwise start with them undefined and
    # only apply them after its route-map delay timer (5 s).
    lines += ["route-map OUT permit 10"]
    if me.communities:
        lines.append(f" set community {' '.join(me.communities)}")
    if me.large:
        lines.append(f" set large-community {' '.join(me.large)}")
    if me.med is not None:
        lines.append(f" set metric {me.med}")
    lines += [f" set ip next-hop {me.next_hop4}", f" set ipv6 next-hop global {me.next_hop6}", "!"]
    for i, route in enumerate(me.routes):
        lines += [f"route-map ORIG{i} permit 10"]
        if route.prepend:
            lines.append(f" set as-path prepend {' '.join(map(str, route.prepend))}")
        if route.origin == "?":
            lines.append(" set origin incomplete")
        lines.append("!")
    lines += ["route-map DENY deny 10", "!"]
    if me is C3:
        for i, (prefix, lp) in enumerate(C3_LOCAL_PREF.items()):
            lines += [f"ip prefix-list LP{i} seq 5 permit {prefix}",
                      f"route-map R2IN permit {10 + i}", f" match ip address prefix-list LP{i}",
                      f" set local-preference {lp}", "!"]
        lines += ["route-map R2IN permit 1000", "!",
                  f"ip prefix-list AGG seq 5 permit {AGGREGATE}",
                  "route-map TOB4 permit 10", " match ip address prefix-list AGG",
                  f" set ip next-hop {me.next_hop4}", "!"]
    lines += [f"router bgp {me.asn}", f" bgp router-id {addr}",
              " no bgp ebgp-requires-policy", " no bgp network import-check",
              " coalesce-time 100"]
    if me is C3:
        lines.append(" bgp bestpath as-path multipath-relax")
    for peer, asn, multihop in peers:
        lines += [f" neighbor {peer} remote-as {asn}", f" neighbor {peer} port {PORT}",
                  f" neighbor {peer} update-source {addr}", f" neighbor {peer} timers 1 3",
                  f" neighbor {peer} timers connect 1", f" neighbor {peer} advertisement-interval 0"]
        if multihop:
            lines.append(f" neighbor {peer} ebgp-multihop 2")
    for family in ("ipv4", "ipv6"):
        lines.append(f" address-family {family} unicast")
        for i, route in enumerate(me.routes):
            if (":" in route.prefix) == (family == "ipv6"):
                lines.append(f"  network {route.prefix} route-map ORIG{i}")
        if me is C3:
            lines.append("  maximum-paths 4")
            if family == "ipv4":
                lines.append(f"  aggregate-address {AGGREGATE} as-set")
        for peer, asn, _ in peers:
            if family == "ipv6":
                lines.append(f"  neighbor {peer} activate")
            if me is C3:
                if asn == B4_ASN:
                    lines.append(f"  neighbor {peer} route-map {'TOB4' if family == 'ipv4' else 'DENY'} out")
                else:
                    lines.append(f"  neighbor {peer} route-map DENY out")
                    if asn == R2.asn and family == "ipv4":
                        lines.append(f"  neighbor {peer} route-map R2IN in")
            else:
                lines.append(f"  neighbor {peer} route-map OUT out")
        lines.append(" exit-address-family")
    lines += ["!", ""]
    return "\n".join(lines)


def _bird_config(lab: "Lab") -> str:
    me = lab.address(B4_HOST)
    peer = f"""
template bgp peer {{
  local {me} port {PORT} as {B4_ASN};
  multihop;
  strict bind on;
  hold time 3;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
}}"""
    r2_tag = (f"bgp_community.add(({B4_R2_COMMUNITY.replace(':', ',')})); "
              f"bgp_large_community.add(({B4_R2_LARGE.replace(':', ',')}));")
    filters = f"""
filter from_r1 {{ bgp_local_pref = {B4_R1_LOCAL_PREF}; accept; }}
filter from_r2 {{ {r2_tag} accept; }}
filter to_c3 {{
  if net != {B4_ROUTE} then reject;
  bgp_next_hop = {B4_NEXT_HOP};
  bgp_community.add(({B4_COMMUNITY.replace(':', ',')}));
  accept;
}}"""
    protocols = []
    for speaker, imp, exp in ((R1, "filter from_r1", "none"), (R2, "filter from_r2", "none"),
                              (C3, "all", "filter to_c3")):
        protocols.append(f"""
protocol bgp {speaker.name} from peer {{
  neighbor {lab.address(speaker.host)} port {PORT} as {speaker.asn};
  ipv4 {{ import {imp}; export {exp}; igp table master4; }};
  ipv6 {{ import {imp}; export none; igp table master6; }};
}}""")
    return f"""
router id {me};
timeformat route iso long;
protocol device {{ }}
# The next hops of the BGP routes resolve through these (no kernel protocol:
# nothing leaves BIRD).
protocol static s4 {{ ipv4; route {V4_STATIC} via "lo"; route {V4_BLACKHOLE} blackhole;
  route {B4_ROUTE} blackhole; }}
protocol static s6 {{ ipv6; route {V6_STATIC} via "lo"; }}
{peer}
{filters}
{''.join(protocols)}
protocol mrt {{ table "master4"; filename "{lab.dir}/b4-%s.mrt"; period 1; }}
"""


class Lab:
    """The four daemons in ``workdir``; ``start()``, ``wait()``, query, ``stop()``."""

    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        self.net = f"127.{random.randrange(100, 250)}.{random.randrange(1, 255)}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.bird_socket = self.dir / "bird.ctl"
        self.converged_at = 0.0  # wall clock, set by wait()

    def address(self, host: int) -> str:
        return f"{self.net}.{host}"

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        b4 = self.address(B4_HOST)
        a = {s.name: self.address(s.host) for s in (R1, R2, C3)}
        peers = {
            "r1": [(a["c3"], C3.asn, False), (b4, B4_ASN, True)],
            "r2": [(a["c3"], C3.asn, False), (b4, B4_ASN, True)],
            "c3": [(a["r1"], R1.asn, False), (a["r2"], R2.asn, False), (b4, B4_ASN, True)],
        }
        for speaker in (R1, R2, C3):
            d = self.dir / speaker.name
            d.mkdir(parents=True, exist_ok=True)
            (d / "bgpd.conf").write_text(_frr_config(speaker, peers[speaker.name], self))
            # -S: no capability dance (we are root); -Z: no zebra; -l: only this
            # address; -P 0: no TCP vty, only the unix socket in --vty_socket.
            argv = [BGPD, "-S", "-Z", "-p", str(PORT), "-l", a[speaker.name],
                    "-f", str(d / "bgpd.conf"), "-i", str(d / "bgpd.pid"),
                    "-z", str(d / "zserv.api"), "--vty_socket", str(d), "-P", "0"]
            self._spawn(speaker.name, argv, d / "stdout")
        (self.dir / "bird.conf").write_text(_bird_config(self))
        self._spawn("b4", [BIRD, "-f", "-c", str(self.dir / "bird.conf"), "-s", str(self.bird_socket),
                           "-P", str(self.dir / "bird.pid")], self.dir / "bird.stdout")

    def _spawn(self, name: str, argv: list[str], log: Path) -> None:
        with open(log, "wb") as out:
            self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, cwd=self.dir)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.logs(name)}")

    def logs(self, name: str) -> str:
        paths = ([self.dir / "bird.stdout"] if name == "b4" else
                 [self.dir / name / "stdout", self.dir / name / "bgpd.log"])
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in paths if p.exists())

    # --- queries -------------------------------------------------------------

    def vtysh(self, name: str, *commands: str) -> bytes:
        argv = [VTYSH, "--vty_socket", str(self.dir / name), "-d", "bgpd"]
        for command in commands:
            argv += ["-c", command]
        proc = subprocess.run(argv, capture_output=True, timeout=20)
        if proc.returncode != 0:
            raise RuntimeError(f"vtysh {name} {commands!r}: {proc.returncode} {proc.stderr!r}")
        return proc.stdout

    def birdc(self, command: str) -> bytes:
        proc = subprocess.run([BIRDC, "-s", str(self.bird_socket), command], capture_output=True, timeout=20)
        if proc.returncode != 0:
            raise RuntimeError(f"birdc {command!r}: {proc.returncode} {proc.stdout!r} {proc.stderr!r}")
        return proc.stdout

    def bird_raw(self, command: str) -> bytes:
        """``command``'s reply on BIRD's control socket, reply codes and all."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(20)
            s.connect(str(self.bird_socket))
            f = s.makefile("rwb")
            reply = [f.readline()]  # the welcome: 0001 BIRD x ready.
            f.write(command.encode() + b"\n")
            f.flush()
            while True:
                line = f.readline()
                if not line:
                    raise RuntimeError(f"BIRD closed the socket during {command!r}")
                reply.append(line)
                # A reply ends with a line whose code is followed by a space.
                if line[:4].isdigit() and line[4:5] == b" ":
                    return b"".join(reply)

    # --- convergence ---------------------------------------------------------

    def expected_paths(self) -> dict[str, int]:
        """Paths per collector table when everything has arrived."""
        v4 = [o.prefix for s in (R1, R2) for o in s.routes if ":" not in o.prefix]
        v6 = [o.prefix for s in (R1, R2) for o in s.routes if ":" in o.prefix]
        return {"c3-4": len(v4) + 2, "c3-6": len(v6),       # + the aggregate, b4's route
                "b4-4": len(v4) + 1 + 3, "b4-6": len(v6) + 1}  # + c3's aggregate, the statics

    def counts(self) -> dict[str, int]:
        out = {}
        for fam in ("4", "6"):
            data = json.loads(self.vtysh("c3", f"show bgp ipv{fam} unicast json"))
            out[f"c3-{fam}"] = sum(len(paths) for paths in data.get("routes", {}).values())
            text = self.birdc(f"show route count table master{fam}").decode()
            # "N of M routes for K networks in table masterX"
            words = [line.split() for line in text.splitlines() if " routes for " in line]
            out[f"b4-{fam}"] = int(words[0][0]) if words else 0
        return out

    def wait(self) -> None:
        """Until every session is up and every path is in both collectors."""
        want = self.expected_paths()
        deadline = time.monotonic() + DEADLINE
        while True:
            self.check_alive()
            try:
                got = self.counts()
            except (RuntimeError, ValueError):
                got = {}
            if got == want and self._aggregate_complete():
                self.converged_at = time.time()
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"routes did not converge in {DEADLINE} s: have {got}, want {want}\n"
                                   + "\n".join(self.logs(n) for n in self.procs))
            time.sleep(0.2)

    def _aggregate_complete(self) -> bool:
        # The aggregate is re-announced as contributors arrive; the test needs
        # its final AS_SET, which names every contributing AS.
        text = self.birdc(f"show route {AGGREGATE} all").decode()
        return all(str(asn) in text for asn in (R1.asn, R2.asn, 64512, 4200000001))

    def bird_mrt(self, since: float) -> Path:
        """A complete BIRD MRT table dump started after ``since`` (wall clock)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            # BIRD names each dump after the second it started (%s); a dump is
            # complete once a later one exists.
            dumps = sorted(self.dir.glob("b4-*.mrt"), key=lambda p: int(p.stem.split("-")[1]))
            fresh = [p for p in dumps if int(p.stem.split("-")[1]) > since]
            if len(fresh) >= 2:
                return fresh[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"no BIRD MRT dump after {since}: {[p.name for p in dumps]}")
            time.sleep(0.2)

    def frr_mrt(self, name: str) -> Path:
        """A routes-mrt dump of ``name``'s table, written on request."""
        path = self.dir / f"{name}.mrt"
        self.vtysh(name, "configure terminal", f"dump bgp routes-mrt {path}")
        deadline = time.monotonic() + DEADLINE
        last = -1
        while True:
            size = path.stat().st_size if path.exists() else -1
            if size > 0 and size == last:
                return path
            last = size
            if time.monotonic() > deadline:
                raise RuntimeError(f"bgpd {name} wrote no MRT dump to {path}")
            time.sleep(0.3)
