"""What every fuzz harness checks, shared by the short runs (pytest and
hypothesis, ``tests/fuzz/test_*.py``) and the long runs (``run.py``, atheris).

A harness is a function of one input (bytes) that feeds it to one reader of
outside input and enforces the rule: the reader either succeeds or raises
one of its documented error types; anything else escaping is a crash, and
an output the rest of ipr cannot hold is a broken rule too (it would blow up
later, in the loader). Each raises AssertionError (or the escaped exception)
when the rule is broken, and returns quietly otherwise.

Imports of the readers happen inside :func:`targets`, so the long runner can
import them under atheris' coverage instrumentation.
"""
from __future__ import annotations

import bz2
import gzip
import io
import ipaddress
import json
import os
import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
# The shared folder of real dump samples sits beside the checkout.
SAMPLES = ROOT.parent / "shared" / "formats" / "samples"
VECTORS = ROOT / "tests" / "vectors" / "wire-v1.json"

ASN_MAX = 2**32 - 1
U32 = 2**32 - 1  # LOCAL_PREF and MED are 4-byte BGP attributes


# The harnesses, in the order the runner takes them.
NAMES = ("wire", "spool", "mrt", "bird", "frr_text", "frr_json", "rir", "asnames", "mmdb")


@dataclass
class Target:
    name: str
    check: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    max_len: int            # longest input the long run generates
    isolate: bool = False   # the reader runs C code that may kill the process: short runs fork


# -- seeds ------------------------------------------------------------------

def sample_files(*globs: str) -> list[Path]:
    """Real samples (decompressed by the caller), or none where shared/ is absent."""
    if not SAMPLES.is_dir():
        return []
    return sorted({p for g in globs for p in SAMPLES.glob(g)
                   if p.is_file() and p.name != "SOURCE.txt" and "EXPECTED" not in p.name})


def _decompressed(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    return data


def _head(data: bytes, limit: int) -> bytes:
    """The first lines of a text sample, whole lines only, up to ``limit`` bytes."""
    if len(data) <= limit:
        return data
    cut = data.rfind(b"\n", 0, limit)
    return data[:cut + 1] if cut > 0 else data[:limit]


def wire_seeds() -> list[bytes]:
    vectors = json.loads(VECTORS.read_text())
    return [bytes.fromhex(v["datagram"]) for v in vectors["valid"] + vectors["invalid"]]


def spool_seeds() -> list[bytes]:
    import numpy as np
    from collector import spool

    out = []
    for n_blocks, n_rows in ((1, 1), (2, 2), (3, 1)):
        head = spool.FILE_HEADER.pack(spool.FILE_MAGIC, spool.FILE_VERSION, spool.ROW.itemsize, 0, 0, 0)
        body = b""
        for b in range(n_blocks):
            rows = np.zeros(n_rows, spool.ROW)
            rows["minute"] = 29_000_000 + b
            rows["records"] = rows["requests"] = 1 + b
            rows["min_rtt_us"] = spool.NO_MIN_RTT
            raw = rows.tobytes()
            body += spool.BLOCK_HEADER.pack(spool.BLOCK_MAGIC, n_rows, _crc(raw), 0, 0) + raw
        out.append(head + body)
    return out


def _crc(data: bytes) -> int:
    import zlib
    return zlib.crc32(data)


def mrt_seeds() -> list[bytes]:
    return [_decompressed(p)[:64 << 10] for p in sample_files("mrt/*")]


def bird_seeds() -> list[bytes]:
    from ipr.routing.samples import bird_dump
    made = bird_dump([("192.0.2.0/24", "64500 64501"), ("2001:db8::/32", "64500 {64502 64503}")])
    return [made.encode()] + [_head(p.read_bytes(), 8 << 10)
                              for p in sample_files("bird/*", "lab-generated/bird-*/*")]


def frr_text_seeds() -> list[bytes]:
    return [_head(p.read_bytes(), 8 << 10)
            for p in sample_files("quagga/*.txt", "lab-generated/frr-*/*.txt")]


def frr_json_seeds() -> list[bytes]:
    made = {"routes": {"192.0.2.0/24": [{"valid": True, "bestpath": True, "path": "64500 64501",
                                         "nexthops": [{"ip": "192.0.2.1"}]}]}}
    return [json.dumps(made).encode()] + [p.read_bytes()[:16 << 10]
                                          for p in sample_files("quagga/*.json", "lab-generated/frr-*/*.json")]


def rir_seeds() -> list[bytes]:
    made = (b"2|ripencc|1|3|19830705|20140630|+0200\n"
            b"ripencc|*|ipv4|*|1|summary\n"
            b"ripencc|NL|ipv4|10.0.0.0|768|20100101|allocated\n"
            b"ripencc|DE|ipv6|2001:db8::|32|20100101|assigned\n"
            b"ripencc|FR|asn|64500|3|20100101|allocated\n")
    return [made] + [_head(p.read_bytes(), 8 << 10) for p in sample_files("rir/*")]


def asnames_seeds() -> list[bytes]:
    text = (b"# AS names\n13335 CLOUDFLARENET, US\nAS4200000000 PRIVATE-USE\n"
            b"AS1.10 ASDOT-EXAMPLE, NL\n64500 NAME, WITH COMMA, ZZ\n")
    api = {"data": [{"asn": 64500, "name": "EXAMPLE"}, {"asn": 64501, "name": "GONE", "status": "deleted"}]}
    dump = {"net": {"data": [{"asn": 64502, "name": "NET", "org_id": 7}]},
            "org": {"data": [{"id": 7, "country": "se"}]}}
    return [text, json.dumps(api).encode(), json.dumps(dump).encode(),
            json.dumps([{"asn": 1, "name": "ONE", "org": {"country": "US"}}]).encode()]


def mmdb_seeds() -> list[bytes]:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    out = []
    for ip_version, records in ((6, [("41.1.0.0/16", {"country": {"iso_code": "NA"}}),
                                     ("2001:db8::/32", {"registered_country": {"iso_code": "DE"}})]),
                                (4, [("198.51.100.0/24", {"country_code": "nl"})])):
        writer = MMDBWriter(ip_version=ip_version, ipv4_compatible=ip_version == 6,
                            database_type="GeoLite2-Country")
        for network, record in records:
            writer.insert_network(IPSet([network]), record)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "seed.mmdb")
            writer.to_db_file(path)
            out.append(Path(path).read_bytes())
    return out


# -- checks -----------------------------------------------------------------

def scratch(prefix: str) -> tempfile.TemporaryDirectory:
    """A folder for the inputs a reader takes as a file: in memory where the
    system has /dev/shm (writing a file per input to disk is the slow part)."""
    shm = "/dev/shm"
    return tempfile.TemporaryDirectory(prefix=prefix, dir=shm if os.access(shm, os.W_OK) else None)


def check_routes(routes) -> None:
    """What the loader needs of every route a dump parser yields."""
    for route in routes:
        assert str(ipaddress.ip_network(route.prefix)) == route.prefix, f"prefix {route.prefix!r} is not canonical"
        a = route.attrs
        for name in ("origin_as", "neighbor_as"):
            value = getattr(a, name)
            assert value is None or 0 <= value <= ASN_MAX, f"{name} {value} out of range"
        for name in ("local_pref", "med"):
            value = getattr(a, name)
            assert value is None or 0 <= value <= U32, f"{name} {value} out of range"
        if a.next_hop is not None:
            ipaddress.ip_address(a.next_hop)
        assert route.best in (True, False, None)


class WireCheck:
    """The decoder and the collector's own fast check must agree on every
    datagram: the same reject reason, or both accept the same records.

    The collector alone knows its key file and each sender's stream, so the
    harness's key file has one key for every source address, and the replay
    state is cleared before each input. Each input is tried as it is and,
    when its framing parses, once more with the key's id and sender id,
    stamped with the current time and signed with the key, so the accepting
    path is fuzzed too (a random tag never matches).
    """
    SECRET = bytes(range(32))
    KEY_ID = 1
    COLLECTOR_ONLY = ("unknown_key", "disabled_key", "source_not_allowed", "replayed")

    def __init__(self):
        from collector import config, spool
        from collector.daemon import Metrics, Worker
        from ipr_agent import wire

        self.wire = wire
        self.tmp = tempfile.TemporaryDirectory(prefix="ipr-fuzz-wire-")
        tmp = Path(self.tmp.name)
        keys = tmp / "keys.json"
        keys.touch(0o600)  # the collector refuses a key file others can read
        keys.write_text(config.dump_keys([{"id": self.KEY_ID, "secret": self.SECRET.hex(),
                                                           "enabled": True, "networks": ["0.0.0.0/0", "::/0"]}]))
        (tmp / "c.toml").write_text('spool_dir = "spool"\nkey_file = "keys.json"\n')
        cfg = config.load_config(tmp / "c.toml")
        spool.make_dirs(cfg.spool_dir)
        # Bound but never read from: handle() is fed through the buffer.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.worker = Worker(cfg, self.sock, 0, Metrics())

    def __call__(self, data: bytes) -> None:
        wire = self.wire
        self.compare(data)
        try:
            header = wire.parse_header(data)
        except wire.WireError:
            return
        cut = len(data) - header.tag_len
        signed = bytearray(data[:cut])
        struct.pack_into(">II", signed, 12, self.KEY_ID, self.KEY_ID)  # key id, sender id
        struct.pack_into(">Q", signed, 36, time.time_ns() // 1_000_000)
        self.compare(bytes(signed) + wire.compute_tag(self.SECRET, signed, header.tag_len))

    def compare(self, data: bytes) -> None:
        wire, worker = self.wire, self.worker
        cfg = worker.cfg
        key = cfg.keys[self.KEY_ID]
        try:
            dgram = wire.decode(data, self.SECRET, sender_ids=key.sender_ids,
                                now_ms=time.time_ns() // 1_000_000, max_age_ms=int(cfg.max_age * 1000),
                                max_future_ms=int(cfg.max_future * 1000), min_tag_len=cfg.min_tag_len,
                                max_datagram=cfg.max_datagram)
            verdict = None
        except wire.WireError as exc:
            dgram, verdict = None, exc.reason
            assert exc.reason not in self.COLLECTOR_ONLY, exc.reason
        n = len(data)
        if n > cfg.max_datagram:
            assert verdict == "oversized", verdict
            return  # UDP cannot carry it to the collector
        worker.receiver = type(worker.receiver)(cfg)  # no stream, count or record of earlier inputs
        worker.buf[:n] = data
        worker.handle(n, ("192.0.2.1", 5000))
        got = [r for r, c in worker.rejects.items() if c]
        assert len(got) <= 1, got
        got = got[0] if got else None
        if verdict in ("oversized", "garbage", "bad_version", "truncated", "malformed"):
            assert got == verdict, f"decoder says {verdict}, collector says {got}"
            return
        if struct.unpack_from(">I", data, 12)[0] != self.KEY_ID:
            assert got == "unknown_key", f"decoder says {verdict}, collector says {got}"
            return
        assert got == verdict, f"decoder says {verdict or 'accepted'}, collector says {got or 'accepted'}"
        if verdict is None:
            # Both accept: the collector kept the version-1 part of each
            # record, which reads as the decoder's record (the fields a flag
            # does not vouch for are ignored when rows are summed).
            kept = bytes(worker.records)
            assert len(kept) == len(dgram.records) * wire.RECORD_SIZE
            for i, record in enumerate(dgram.records):
                got = wire.Record.unpack(kept, i * wire.RECORD_SIZE)
                for flag, names in wire.FLAG_FIELDS:
                    if not got.flags & flag:
                        for name in names:
                            setattr(got, name, 0)
                assert got == record, f"record {i}: collector {got}, decoder {record}"


class SpoolCheck:
    """A segment either parses (the rows of its complete, CRC-checked blocks)
    or is refused with SpoolError; ``read_segment`` of the file agrees with
    ``scan_segment`` of its bytes."""

    def __init__(self):
        import numpy as np
        from collector import spool

        self.np, self.spool = np, spool
        self.tmp = scratch("ipr-fuzz-spool-")
        self.path = Path(self.tmp.name) / "x.seg"

    def __call__(self, data: bytes) -> None:
        np, spool = self.np, self.spool
        try:
            blocks, valid, _tail = spool.scan_segment(data, "x.seg")
        except spool.SpoolError as exc:
            assert "x.seg" in str(exc) and "byte" in str(exc), str(exc)
            blocks = None
        else:
            assert 0 <= valid <= len(data)
        self.path.write_bytes(data)
        try:
            rows = spool.read_segment(self.path)
        except spool.SpoolError:
            assert blocks is None, "read_segment refuses what scan_segment reads"
            return
        assert blocks is not None, "read_segment reads what scan_segment refuses"
        expected = np.concatenate(blocks) if blocks else np.zeros(0, spool.ROW)
        assert rows.tobytes() == expected.tobytes()


def in_child(check: Callable[[bytes], None], data: bytes) -> None:
    """``check(data)`` in a forked process: a reader that kills its process
    (a C extension's abort or segfault) fails this input instead of the run."""
    import traceback

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running any cleanup
        os.close(read)
        code = 0
        try:
            check(data)
        except BaseException:
            os.write(write, traceback.format_exc().encode()[-4000:])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        report = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise AssertionError(f"the reader killed its process with signal {os.WTERMSIG(status)}")
    if os.WEXITSTATUS(status):
        raise AssertionError(f"in the child process:\n{report}")


# No input of a few kilobytes stands for more records than this: one that
# yields more makes the reader's time and the loader's memory unbounded (a
# hang the short runs catch without a clock).
MAX_ITEMS = 1_000_000


def _bounded(iterator):
    for i, item in enumerate(iterator):
        if i >= MAX_ITEMS:
            raise AssertionError(f"more than {MAX_ITEMS} records from one input: unbounded output")
        yield item


def _drain(iterator) -> None:
    for _ in _bounded(iterator):
        pass


def targets(names=NAMES) -> dict[str, Target]:
    """The harnesses named (each builds its reader's state: a collector
    worker, scratch folders), imported here so the caller can instrument them."""
    from ipr.routing.dumps import DumpError, asnames, bird, frr, mmdb, mrt, rir

    def dump_check(parse, routes=True):
        def check(data: bytes) -> None:
            try:
                out = parse(data)
                if routes:
                    check_routes(_bounded(out))
                else:
                    _drain(out)
            except DumpError as exc:
                assert exc.source == "fuzz" and exc.where, str(exc)
        return check

    def mrt_both(data):
        yield from mrt.parse(data, "fuzz")
        for entry in mrt.entries(data, "fuzz", accept_truncated=True):
            yield entry.route

    def rir_both(data):
        for prefix, cc in rir.parse(io.BytesIO(data), "fuzz"):
            assert str(ipaddress.ip_network(prefix)) == prefix and len(cc) == 2
            yield prefix
        for asn, cc in rir.asn_countries(io.BytesIO(data), "fuzz"):
            assert 0 <= asn <= ASN_MAX and len(cc) == 2
            yield asn

    def asnames_all(data):
        for asn, name, cc in asnames.parse(data, "fuzz"):
            assert 0 <= asn <= ASN_MAX and name and (cc is None or len(cc) == 2)
            assert "\x00" not in name, f"AS{asn}: a NUL in the name, which PostgreSQL text cannot hold"
            yield asn

    def mmdb_check():
        folder = scratch("ipr-fuzz-mmdb-")
        path = Path(folder.name) / "x.mmdb"

        def mmdb_all(data):
            path.write_bytes(data)
            for network, cc in mmdb.parse(path, "fuzz"):
                assert str(ipaddress.ip_network(network)) == network and len(cc) == 2
                yield network
        check = dump_check(mmdb_all, routes=False)
        check.folder = folder  # the folder lives as long as the harness
        return check

    makers = {
        "wire": lambda: Target("wire", WireCheck(), wire_seeds, 2048),
        "spool": lambda: Target("spool", SpoolCheck(), spool_seeds, 4096),
        "mrt": lambda: Target("mrt", dump_check(mrt_both), mrt_seeds, 8192),
        "bird": lambda: Target("bird", dump_check(lambda d: bird.parse(io.BytesIO(d), "fuzz")), bird_seeds, 4096),
        "frr_text": lambda: Target("frr_text", dump_check(lambda d: frr.parse_text(io.BytesIO(d), "fuzz")),
                                   frr_text_seeds, 4096),
        "frr_json": lambda: Target("frr_json", dump_check(lambda d: frr.parse_json(io.BytesIO(d), "fuzz")),
                                   frr_json_seeds, 4096),
        "rir": lambda: Target("rir", dump_check(rir_both, routes=False), rir_seeds, 4096),
        "asnames": lambda: Target("asnames", dump_check(asnames_all, routes=False), asnames_seeds, 4096),
        "mmdb": lambda: Target("mmdb", mmdb_check(), mmdb_seeds, 4096, isolate=True),
    }
    return {name: makers[name]() for name in names}
