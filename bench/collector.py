#!/usr/bin/env python3
"""Collector throughput benchmark: one worker process against a C ceiling.

    .venv/bin/python bench/collector.py [--quick] [--regenerate]

Pre-generates signed datagrams from 8 sender instances (cached in
bench/build/data for 30 minutes; the bench collector accepts timestamps up
to an hour old), builds the C sender and receiver with gcc into
bench/build, then for each scenario starts a fresh collector (processes =
1, its own spool, default 32 MiB receive buffer), pins it to one CPU and
the sender to the other, and measures:

- accepted datagrams and records, from the metrics counters and from the
  spool rows written by the final flush on SIGTERM (both must equal what
  was sent minus what the kernel dropped);
- kernel drops: the socket's drops column in /proc/net/udp, Udp
  RcvbufErrors in /proc/net/snmp (system-wide), and the collector's
  socket_drops counter;
- wall rate: accepted / (first send .. receive queue empty);
- worker CPU seconds (utime + stime of the worker, up to the flush that
  published the last count) and accepted per CPU second;
- other processes' time on the worker's CPU, to show a contended run.

"Max rate" keeps SATURATE bytes queued at the receiver: the worker never
waits, the buffer never overflows. An open-loop blast shows overload (the
kernel drops the excess) and a paced one the steady 50k/s case.

The collector runs its compiled receive loop (collector/_receive.c,
IPR_NATIVE=1: a missing build fails the run); the 1-record max-rate case
runs once more with the pure-Python twin (IPR_NATIVE=0) for comparison.

Then the same files go to bench/c/recvloop.c, timed while it drains a full
queue: a bare recvmmsg loop (the ceiling the ratio is taken against) and,
with OpenSSL, loops that check every HMAC (recvmmsg batches, and one
recvfrom per datagram).
Loopback only. No assertions on timings: it prints figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector import spool, synth  # noqa: E402

BENCH = ROOT / "bench"
BUILD = BENCH / "build"
DATA = BUILD / "data"
RUNS = BUILD / "runs"
PY = sys.executable

KEY_ID = 1
SECRET = bytes(range(32))  # loopback only: a fixed key keeps the cache valid
INSTANCES = 8
CACHE_SECONDS = 1800  # the bench config's max_age is 3600 s
STEADY_RATE = 50_000
BATCH_RATE = 500_000 // 11  # 11-record datagrams carrying 500k records/s
# Max-rate blasts keep up to this much queued at the receiver (it never
# runs dry, the 32 MiB default buffer never overflows): a sender that
# overruns the buffer would finish in a fraction of a second and measure
# mostly drops. One open-loop blast shows that case too.
SATURATE = 16 << 20

SIZES = {  # datagrams per file
    "full": {"single": 1_000_000, "batch": 200_000, "jumbo": 40_000, "steady_s": 10},
    "quick": {"single": 200_000, "batch": 40_000, "jumbo": 8_000, "steady_s": 3},
}
RECORDS = {"single": 1, "batch": 11, "jumbo": 67}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Build and data

def build() -> bool:
    """Compile the C tools; returns whether recvloop can check HMACs."""
    BUILD.mkdir(parents=True, exist_ok=True)
    cc = ["gcc", "-O2", "-Wall", "-Wextra"]
    subprocess.run(cc + ["-o", str(BUILD / "blast"), str(BENCH / "c" / "blast.c")], check=True)
    have_ssl = Path("/usr/include/openssl/hmac.h").exists()
    if have_ssl:
        r = subprocess.run(cc + ["-DWITH_OPENSSL", "-o", str(BUILD / "recvloop"),
                                 str(BENCH / "c" / "recvloop.c"), "-lcrypto"])
        have_ssl = r.returncode == 0
    if not have_ssl:
        log("OpenSSL headers or libcrypto missing: recvloop built without HMAC checks")
        subprocess.run(cc + ["-o", str(BUILD / "recvloop"), str(BENCH / "c" / "recvloop.c")], check=True)
    return have_ssl


def data_file(kind: str, count: int, regenerate: bool) -> Path:
    """A file of ``count`` length-prefixed datagrams of RECORDS[kind] records.

    Instances are interleaved round robin, as several agents would be; each
    has its own sequence numbers from 1, so a fresh spool accepts them all.
    """
    per = RECORDS[kind]
    path = DATA / f"{kind}-{per}x{count}.bin"
    meta = path.with_suffix(".json")
    if not regenerate and path.exists() and meta.exists():
        m = json.loads(meta.read_text())
        if time.time() * 1000 - m["time_ms"] < CACHE_SECONDS * 1000 and m["secret"] == SECRET.hex():
            return path
    DATA.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    now_ms = int(time.time() * 1000)
    traffic = synth.Traffic(seed=per)
    each = -(-count // INSTANCES)
    streams = [synth.datagrams(traffic, each, per, KEY_ID, SECRET, sender_id=1 + i % 4,
                               instance_id=0x1000 + i, time_ms=now_ms)
               for i in range(INSTANCES)]
    tmp = path.with_suffix(".tmp")
    pack = struct.Struct("<I").pack
    with open(tmp, "wb") as f:
        written = 0
        for j in range(each):
            for s in streams:
                if written < count:
                    f.write(pack(len(s[j])) + s[j])
                    written += 1
    os.replace(tmp, path)
    meta.write_text(json.dumps({"time_ms": now_ms, "secret": SECRET.hex(), "count": count,
                                "records": per, "size": len(streams[0][0])}))
    log(f"generated {count} x {len(streams[0][0])}-byte datagrams ({per} records) "
        f"in {time.monotonic() - started:.1f} s")
    return path


# --------------------------------------------------------------------------
# /proc readers

def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_socket_state(port: int) -> tuple[int, int] | None:
    """(rx_queue bytes, drops) of the 127.0.0.1:port socket, None if absent."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            p = line.split()
            if p[1] == want:
                return int(p[4].split(":")[1], 16), int(p[12])
    return None


def rcvbuf_errors() -> int:
    with open("/proc/net/snmp") as f:
        lines = [ln.split() for ln in f if ln.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_busy(cpu) -> float:
    """Seconds CPU ``cpu`` has spent not idle, whoever ran (None: all CPUs)."""
    want = "cpu" if cpu is None else f"cpu{cpu}"
    with open("/proc/stat") as f:
        for line in f:
            p = line.split()
            if p[0] == want:
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, p[1:9])
                return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return 0.0


def machine_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over a short sample."""
    b0, t0 = cpu_busy(None), time.monotonic()
    time.sleep(seconds)
    return (cpu_busy(None) - b0) / ((time.monotonic() - t0) * os.cpu_count())


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except OSError:
                pass
    return out


def tcp_listen_inode(port: int) -> int | None:
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if p[1] == want and p[3] == "0A":
                return int(p[9])
    return None


def holds_socket(pid: int, inode: int) -> bool:
    target = f"socket:[{inode}]"
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def wait_drained(port: int, timeout: float) -> float:
    """Monotonic time at which the socket's receive queue was first seen empty."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = udp_socket_state(port)
        if state is None or state[0] == 0:
            return time.monotonic()
        time.sleep(0.002)
    raise RuntimeError(f"receive queue on port {port} not drained after {timeout} s")


# --------------------------------------------------------------------------
# Runs

def pin(cpu):
    return (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None


def blast(path: Path, port: int, cpu, rate: int = 0, count: int = 0, max_queue: int = 0) -> dict:
    out = subprocess.run([str(BUILD / "blast"), str(path), "127.0.0.1", str(port), "--rate", str(rate),
                          "--count", str(count), "--max-queue", str(max_queue)],
                         preexec_fn=pin(cpu), capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise RuntimeError(f"blast failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def scrape(mport: int) -> dict[str, float]:
    """Metric name -> value, summed over labels."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            base = name.split("{", 1)[0]
            values[base] = values.get(base, 0.0) + float(value)
    return values


def run_collector(name: str, path: Path, per: int, cpus, rate: int = 0, count: int = 0,
                  max_queue: int = 0, native: str = "1") -> dict:
    cpu_recv, cpu_send = cpus
    run = RUNS / name
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    port, mport = free_port(), free_port(socket.SOCK_STREAM)
    (run / "keys.json").write_text(json.dumps({"keys": [{
        "id": KEY_ID, "secret": SECRET.hex(), "enabled": True,
        "networks": ["127.0.0.0/8", "::1/128"], "sender_ids": [1, 2, 3, 4], "name": "bench"}]}))
    (run / "keys.json").chmod(0o600)  # the collector refuses a key file others can read
    (run / "collector.toml").write_text(
        f'listen = ["127.0.0.1:{port}"]\nprocesses = 1\nspool_dir = "spool"\n'
        f'key_file = "keys.json"\nmetrics_listen = "127.0.0.1:{mport}"\n'
        f'max_age = 3600\n')  # rcvbuf 32 MiB, flush_interval 1 s: the defaults
    logf = open(run / "collector.log", "w")
    master = subprocess.Popen([PY, "-m", "collector", "-c", str(run / "collector.toml"), "--log-level", "INFO"],
                              cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, preexec_fn=pin(cpu_recv),
                              env={**os.environ, "IPR_NATIVE": native})
    try:
        worker = None
        deadline = time.monotonic() + 20
        while worker is None:
            if time.monotonic() > deadline or master.poll() is not None:
                raise RuntimeError(f"collector did not start; see {run / 'collector.log'}")
            time.sleep(0.05)
            inode = tcp_listen_inode(mport)
            kids = children(master.pid)
            if inode is None or len(kids) < 2 or udp_socket_state(port) is None:
                continue
            workers = [k for k in kids if not holds_socket(k, inode)]
            if len(workers) == 1:
                worker = workers[0]
        scrape(mport)  # the metrics process answers

        snmp0, cpu0, drops0 = rcvbuf_errors(), cpu_seconds(worker), udp_socket_state(port)[1]
        busy0 = cpu_busy(cpu_recv)
        sent = blast(path, port, cpu_send, rate, count, max_queue)
        t_drained = wait_drained(port, 120)
        cpu_drained = cpu_seconds(worker)
        drops = udp_socket_state(port)[1] - drops0
        expect = sent["sent"] - drops
        # Counters are published at each flush; wait for the one that covers
        # everything received, so the CPU figure includes its aggregation.
        deadline = time.monotonic() + 10
        while True:
            m = scrape(mport)
            if m.get("ipr_collector_datagrams_received_total", 0) >= expect or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        cpu = cpu_seconds(worker) - cpu0
        # Anything else on the worker's CPU (this host may run other jobs).
        others = cpu_busy(cpu_recv) - busy0 - cpu
        snmp = rcvbuf_errors() - snmp0
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            code = master.wait(timeout=30)
        except subprocess.TimeoutExpired:
            master.kill()
            code = master.wait()
        logf.close()
    rows = spool.read_dir(run / "spool")
    accepted = int(m.get("ipr_collector_datagrams_accepted_total", 0))
    said = [line.split("receive loop ", 1)[1].split(" (")[0] for line in (run / "collector.log").read_text().splitlines()
            if "worker 0: receive loop " in line]
    # The last flush runs up to flush_interval after the queue empties; the
    # worker is idle until then, so count only that flush's CPU time.
    wall = t_drained - sent["start_ns"] / 1e9 + cpu - (cpu_drained - cpu0)
    return {
        "name": name, "per": per, "sent": sent["sent"], "send_s": (sent["end_ns"] - sent["start_ns"]) / 1e9,
        "received": int(m.get("ipr_collector_datagrams_received_total", 0)),
        "accepted": accepted, "records": int(m.get("ipr_collector_records_accepted_total", 0)),
        "rejected": int(m.get("ipr_collector_datagrams_rejected_total", 0)),
        "spool_records": int(rows["records"].sum()), "spool_requests": int(rows["requests"].sum()),
        "spool_rows": len(rows), "drops": drops, "snmp_drops": snmp,
        "metric_drops": int(m.get("ipr_collector_socket_drops_total", 0)),
        "wall": wall, "cpu": cpu, "others": max(others, 0.0), "exit": code,
        "loop": said[0] if said else "?",
    }


def run_ceiling(name: str, path: Path, cpus, mode: str) -> dict:
    """The same blast into recvloop, timed only while it drains a full queue."""
    cpu_recv, cpu_send = cpus
    port = free_port()
    args = [str(BUILD / "recvloop"), "127.0.0.1", str(port), "--drain-from", str(SATURATE)]
    if mode == "recvfrom+hmac":
        args += ["--recvfrom", "--hmac", SECRET.hex()]
    elif mode == "recvmmsg+hmac":
        args += ["--hmac", SECRET.hex()]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, preexec_fn=pin(cpu_recv))
    try:
        json.loads(proc.stdout.readline())  # bound and ready
        snmp0, busy0 = rcvbuf_errors(), cpu_busy(cpu_recv)
        sent = blast(path, port, cpu_send, max_queue=3 * SATURATE)  # never overflow 32 MiB (x2)
        wait_drained(port, 60)
        drops = udp_socket_state(port)[1]
        snmp = rcvbuf_errors() - snmp0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    r = json.loads(out)
    others = cpu_busy(cpu_recv) - busy0 - r["total_cpu_s"]
    return {"name": name, "mode": mode, "sent": sent["sent"], "received": r["datagrams"],
            "bad_tags": r["bad_tags"], "drops": drops, "snmp_drops": snmp,
            "wall": r["busy_s"], "cpu": r["cpu_s"], "others": max(others, 0.0)}


# --------------------------------------------------------------------------
# Report

def fmt(n: float) -> str:
    return f"{n:,.0f}"


def table(headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a fifth of the datagrams, 3 s steady")
    p.add_argument("--regenerate", action="store_true", help="ignore cached datagram files")
    args = p.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    started = time.monotonic()

    cpus = sorted(os.sched_getaffinity(0))
    # Receiver on one CPU; sender (and this script, which mostly waits) on another.
    pair = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    if pair[1] is not None:
        os.sched_setaffinity(0, {pair[1]})
    busy = machine_busy()
    if busy > 0.1:
        log(f"warning: this machine is {busy:.0%} busy before the bench starts; wall-clock figures "
            f"will be low (see the 'others CPU-s' column)")
    have_ssl = build()
    files = {k: data_file(k, size[k], args.regenerate) for k in RECORDS}
    steady_n = STEADY_RATE * size["steady_s"]
    assert steady_n <= size["single"]

    # name, file kind, rate (0: max), queue kept by the sender (0: open loop), compared with the
    # C loops, IPR_NATIVE for the collector ("1": the compiled receive loop, "0": its Python twin)
    scenarios = [
        ("1-record, max rate", "single", 0, SATURATE, True, "1"),
        ("1-record, max rate, Python twin", "single", 0, SATURATE, True, "0"),
        ("11-record (1380 B), max rate", "batch", 0, SATURATE, True, "1"),
        ("67-record (8100 B), max rate", "jumbo", 0, SATURATE, True, "1"),
        (f"1-record, steady {STEADY_RATE // 1000}k/s {size['steady_s']} s", "single", STEADY_RATE, 0, False, "1"),
        # The batched target as a steady load: do flushes of ~500k records stall reception into drops?
        (f"11-record, steady {BATCH_RATE // 1000}k/s (500k records/s)", "batch", BATCH_RATE, 0, False, "1"),
        ("1-record, open-loop overload", "single", 0, 0, False, "1"),
    ]
    results = []
    for i, (name, kind, rate, queue, _c, native) in enumerate(scenarios):
        log(f"collector: {name}")
        count = steady_n if kind == "single" and rate else 0
        results.append(run_collector(f"{i}-{kind}", files[kind], RECORDS[kind], pair, rate, count, queue,
                                     native))
    modes = ["recvmmsg"] + (["recvmmsg+hmac", "recvfrom+hmac"] if have_ssl else [])
    ceilings = {}
    for name, kind, _rate, _buf, has_c, _native in scenarios:
        for mode in modes if has_c else ():
            if (kind, mode) not in ceilings:
                log(f"C {mode}: {kind}")
                ceilings[(kind, mode)] = run_ceiling(name, files[kind], pair, mode)

    print(f"\nipr collector benchmark{' (quick)' if args.quick else ''}: {os.cpu_count()} CPUs, "
          f"Linux {platform.release()}, Python {platform.python_version()}; worker on CPU {pair[0]}, "
          f"sender on CPU {pair[1]}")
    rows, checks = [], []
    for (name, kind, rate, _buf, has_c, _native), r in zip(scenarios, results):
        rows.append([
            name, r["loop"], fmt(r["sent"]), fmt(r["sent"] / r["send_s"]), fmt(r["accepted"]),
            f"{fmt(r['drops'])}/{fmt(r['snmp_drops'])}/{fmt(r['metric_drops'])}",
            f"{r['wall']:.2f}", fmt(r["accepted"] / r["wall"]), fmt(r["records"] / r["wall"]),
            f"{r['cpu']:.2f}", f"{r['cpu'] / r['wall']:.0%}",
            fmt(r["accepted"] / r["cpu"]) if r["cpu"] else "-",
            fmt(r["records"] / r["cpu"]) if r["cpu"] else "-", f"{r['others']:.2f}",
        ])
        ok = (r["received"] == r["sent"] - r["drops"] and r["accepted"] == r["received"]
              and r["records"] == r["accepted"] * r["per"] == r["spool_records"] == r["spool_requests"]
              and r["metric_drops"] == r["drops"] and r["exit"] == 0)
        checks.append(f"  {name}: sent {fmt(r['sent'])} - dropped {fmt(r['drops'])} = "
                      f"{fmt(r['sent'] - r['drops'])}; received {fmt(r['received'])}, accepted "
                      f"{fmt(r['accepted'])}, rejected {r['rejected']}; records: metrics "
                      f"{fmt(r['records'])}, spool {fmt(r['spool_records'])} in {fmt(r['spool_rows'])} rows; "
                      f"exit {r['exit']}: {'OK' if ok else 'MISMATCH'}")
    print(f"\nCollector, processes = 1, default rcvbuf (32 MiB). Max rate: the sender, on the other CPU, "
          f"keeps {SATURATE >> 20} MiB queued; open loop: it just sends")
    print(table(["scenario", "receive loop", "sent", "sent/s", "accepted", "drops", "wall s", "dgram/s", "records/s",
                 "CPU-s", "CPU/wall", "dgram/CPU-s", "rec/CPU-s", "others CPU-s"], rows))
    print("  drops: the socket's (/proc/net/udp) / Udp RcvbufErrors (system-wide) / the collector's "
          "socket_drops counter\n"
          "  wall: first send to receive queue empty, plus the CPU time of the flush that follows "
          "(the worker idles until it is due)\n"
          "  CPU-s: worker utime+stime up to the flush that published the last count\n"
          "  others CPU-s: time other processes used the worker's CPU meanwhile (0 = uncontended)")
    print("\nAccounting (metrics and spool must both hold sent - dropped):")
    print("\n".join(checks))

    crow = []
    for (name, kind, _rate, _buf, has_c, _native), r in zip(scenarios, results):
        for mode in modes if has_c else ():
            c = ceilings[(kind, mode)]
            c_wall = c["received"] / c["wall"] if c["wall"] else None
            c_cpu = c["received"] / c["cpu"] if c["cpu"] else None
            crow.append([name, mode, fmt(c["received"]), fmt(c["drops"]), f"{c['wall']:.3f}",
                         fmt(c_wall) if c_wall else "-", f"{c['cpu']:.2f}", fmt(c_cpu) if c_cpu else "-",
                         f"{r['accepted'] / r['wall'] / c_wall:.2f}" if c_wall else "-",
                         f"{r['accepted'] / r['cpu'] / c_cpu:.2f}" if c_cpu and r["cpu"] else "-",
                         c["bad_tags"] if mode.endswith("hmac") else "-", f"{c['others']:.2f}"])
    print(f"\nC ceiling (bench/c/recvloop.c), the same files blasted; timed only while draining a queue "
          f"of >= {SATURATE >> 20} MiB (live, it would wait for the sender)")
    print(table(["scenario", "loop", "received", "drops", "drain s", "dgram/s", "CPU-s", "dgram/CPU-s",
                 "collector/C dgram/s", "collector/C per CPU-s", "bad tags", "others CPU-s"], crow))
    by_name = {sc[0]: r for sc, r in zip(scenarios, results)}
    one, jumbo = by_name["1-record, max rate"], by_name["67-record (8100 B), max rate"]

    def ratio(r, kind, mode):
        c = ceilings.get((kind, mode))
        if not c or not c["wall"] or not c["cpu"] or not r["cpu"]:
            return "-"
        return (f"{r['accepted'] / r['wall'] / (c['received'] / c['wall']):.2f}x per wall s, "
                f"{r['accepted'] / r['cpu'] / (c['received'] / c['cpu']):.2f}x per CPU s")
    print("\nTargets, this run:")
    print(f"  1-record datagrams, compiled loop vs C recvmmsg+hmac (target >= 0.5x): "
          f"{ratio(one, 'single', 'recvmmsg+hmac')}")
    print(f"  1-record datagrams, compiled loop vs C recvfrom+hmac: {ratio(one, 'single', 'recvfrom+hmac')}")
    print(f"  1-record datagrams, compiled loop vs bare C recvmmsg (target >= 0.3x): "
          f"{ratio(one, 'single', 'recvmmsg')}")
    twin = by_name["1-record, max rate, Python twin"]
    print(f"  1-record datagrams, compiled loop vs its Python twin: "
          f"{one['accepted'] / one['wall'] / (twin['accepted'] / twin['wall']):.1f}x per wall s, "
          f"{one['accepted'] / one['cpu'] / (twin['accepted'] / twin['cpu']):.1f}x per CPU s")
    print(f"  67-record datagrams (target >= 2,000,000 records/s): {fmt(jumbo['records'] / jumbo['wall'])} "
          f"records/s wall, {fmt(jumbo['records'] / jumbo['cpu'])} per CPU s")
    print(f"  >= 100,000 1-record datagrams/s: {fmt(one['accepted'] / one['wall'])}; 0 drops at "
          f"{STEADY_RATE:,}/s: {fmt(by_name[scenarios[4][0]]['drops'])} dropped. "
          f"Bench time {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
