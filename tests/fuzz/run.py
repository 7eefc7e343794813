"""Long, coverage-guided fuzz runs of every reader (``make fuzz``).

    python tests/fuzz/run.py [--runs N] [--out DIR] [--timeout S] [NAME ...]

Each harness of harness.py runs under atheris (libFuzzer), its readers'
modules instrumented for coverage, from a corpus seeded with the samples.
By default the datagram decoder runs 10 million inputs and every other
reader one million. A broken rule (an undocumented exception, a bad
output) is recorded and the run goes on; an input that runs longer than
``--timeout`` seconds is recorded as a hang and interrupted; a reader that
kills or wedges its process (a C extension's abort) is recorded with the
input it was reading (``killed-*``) and the run is restarted for the inputs
left, with the next libFuzzer seed. Findings, with the input
that caused each, go under ``DIR/NAME/``; a table of figures is printed and
written to ``DIR/summary.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]

RUNS = {"wire": 10_000_000}
DEFAULT_RUNS = 1_000_000
MAX_RESTARTS = 20  # a reader that keeps killing its process: enough inputs to show it


class Hang(Exception):
    pass


def child(name: str, runs: int, out: Path, timeout: float, seed: int) -> None:
    """One libFuzzer run of one harness; never returns."""
    import atheris
    import harness

    with atheris.instrument_imports(include=["ipr", "collector", "ipr_agent"]):
        target = harness.targets([name])[name]
    work = out / name
    counter = open(work / "inputs", "r+b")
    count = mmap.mmap(counter.fileno(), 8)
    # The input being read, kept where the runner finds it if the reader
    # takes the process down before libFuzzer can save it.
    current_file = open(work / "current", "w+b")
    current_file.truncate(8 + target.max_len)
    current = mmap.mmap(current_file.fileno(), 8 + target.max_len)
    findings = work / "findings.jsonl"
    seen = {json.loads(line)["key"] for line in findings.read_text().splitlines()} if findings.exists() else set()

    def alarm(signum, frame):
        raise Hang(f"still running after {timeout} s")

    signal.signal(signal.SIGALRM, alarm)

    def record(kind: str, exc: BaseException, data: bytes) -> None:
        tb = traceback.extract_tb(exc.__traceback__)
        where = next((f for f in reversed(tb) if "/tests/fuzz/" not in f.filename), tb[-1])
        key = f"{kind} {type(exc).__name__} {where.filename}:{where.lineno}"
        if key in seen:
            return
        seen.add(key)
        path = work / f"{kind}-{hashlib.sha1(data).hexdigest()[:16]}"
        path.write_bytes(data)
        with open(findings, "a") as f:
            f.write(json.dumps({"key": key, "kind": kind, "exception": f"{type(exc).__name__}: {exc}"[:500],
                                "where": f"{where.filename}:{where.lineno} in {where.name}",
                                "input": str(path), "size": len(data)}) + "\n")

    def one(data: bytes) -> None:
        count[:8] = (int.from_bytes(count[:8], "little") + 1).to_bytes(8, "little")
        current[:8] = len(data).to_bytes(8, "little")
        current[8:8 + len(data)] = data
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            target.check(data)
        except Hang as exc:
            record("hang", exc, data)
        except Exception as exc:  # noqa: BLE001 - every escape is a finding
            record("crash", exc, data)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    corpus = work / "corpus"
    args = [sys.argv[0], str(corpus), f"-runs={runs}", f"-max_len={target.max_len}",
            "-timeout=0",  # the per-input bound is ours (SIGALRM), so a hang is recorded, not fatal
            "-rss_limit_mb=2048", f"-artifact_prefix={work}/", "-print_final_stats=1",
            f"-seed={seed}", "-reload=0"]
    atheris.Setup(args, one)
    atheris.Fuzz()


def _inputs(work: Path) -> int:
    return int.from_bytes((work / "inputs").read_bytes()[:8], "little")


def _supervise(name: str, runs: int, out: Path, timeout: float, work: Path, log: Path, seed: int) -> int:
    """Run one child; kill it if it stops counting inputs (a reader wedged
    in C code, or a process stuck on its way out after heap corruption)."""
    start = log.stat().st_size
    with open(log, "a") as logf:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", name,
                                 "--runs", str(runs), "--out", str(out), "--timeout", str(timeout),
                                 "--seed", str(seed)],
                                stdout=logf, stderr=logf, cwd=ROOT, start_new_session=True)
        seen, still_since = _inputs(work), time.monotonic()
        while proc.poll() is None:
            time.sleep(1)
            now = _inputs(work)
            if now != seen:
                seen, still_since = now, time.monotonic()
            died = b"libFuzzer: deadly signal" in log.read_bytes()[start:]
            if died or time.monotonic() - still_since > 3 * timeout + 60:  # startup included
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                logf.write("runner: killed the child " + ("after its deadly signal\n" if died else
                                                          f"after {3 * timeout + 60:.0f} s without an input\n"))
                return -signal.SIGKILL
        return proc.returncode


def run_one(name: str, runs: int, out: Path, timeout: float) -> dict:
    import harness

    work = out / name
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        target = harness.targets([name])[name]
        for data in target.seeds():
            (corpus / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data[:target.max_len])
    (work / "inputs").write_bytes(bytes(8))
    log = work / "libfuzzer.log"
    log.write_text("")
    started = time.monotonic()
    done = restarts = 0
    killed = []
    while done < runs and restarts <= MAX_RESTARTS:
        # A fixed seed per start: the same run each time; a restart takes the next.
        returncode = _supervise(name, runs - done, out, timeout, work, log, seed=1 + restarts)
        last, done = done, _inputs(work)
        if returncode == 0:
            break
        if done == last:
            raise SystemExit(f"{name}: the harness stopped before its first input; see {log}")
        # The reader took the process down (or wedged it): keep the input it was reading.
        raw = (work / "current").read_bytes()
        data = raw[8:8 + int.from_bytes(raw[:8], "little")]
        path = work / f"killed-{hashlib.sha1(data).hexdigest()[:16]}"
        path.write_bytes(data)
        killed.append({"exit": returncode, "inputs": [str(path)]})
        restarts += 1
    text = log.read_text(errors="replace")
    cov = re.findall(r"cov: (\d+) ft: (\d+)", text)
    findings = [json.loads(line) for line in (work / "findings.jsonl").read_text().splitlines()] \
        if (work / "findings.jsonl").exists() else []
    seconds = time.monotonic() - started
    return {"name": name, "inputs": done, "seconds": round(seconds, 1),
            "per_second": round(done / seconds) if seconds else 0,
            "coverage": int(cov[-1][0]) if cov else None, "features": int(cov[-1][1]) if cov else None,
            "corpus": sum(1 for _ in corpus.iterdir()),
            "crashes": sum(f["kind"] == "crash" for f in findings),
            "hangs": sum(f["kind"] == "hang" for f in findings),
            "process_killed": len(killed), "killed": killed, "findings": findings}


def main(argv=None) -> int:
    from harness import NAMES as names  # the readers are imported later: instrumented in a child

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=", ".join(names))
    p.add_argument("--runs", type=int, help="inputs per harness (default: 10M for wire, 1M for the others)")
    p.add_argument("--out", type=Path, default=ROOT / "var" / "fuzz")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds one input may take (default 10)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.runs, args.out.resolve(), args.timeout, args.seed)
        return 0
    unknown = set(args.names) - set(names)
    if unknown:
        p.error(f"no harness named {', '.join(sorted(unknown))}")
    out = args.out.resolve()
    results = []
    summary = out / "summary.json"
    for name in args.names or names:
        result = run_one(name, args.runs or RUNS.get(name, DEFAULT_RUNS), out, args.timeout)
        results.append(result)
        print(f"{name:<9} {result['inputs']:>10} inputs {result['seconds']:>8.1f} s "
              f"{result['per_second']:>7}/s  cov {result['coverage']}  ft {result['features']}  "
              f"corpus {result['corpus']}  crashes {result['crashes']}  hangs {result['hangs']}  "
              f"process killed {result['process_killed']}", flush=True)
        for f in result["findings"]:
            print(f"    {f['kind']}: {f['exception']} at {f['where']} (input {f['input']})")
        for k in result["killed"]:
            print(f"    process killed (exit {k['exit']}): {', '.join(k['inputs']) or 'no input saved'}")
        summary.write_text(json.dumps(results, indent=1))
    return 1 if any(r["crashes"] or r["hangs"] or r["process_killed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
