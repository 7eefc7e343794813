"""The nginx module's C encoder (nginx_module/ipr_wire.c) reproduces every
golden vector of the wire format, built with gcc and OpenSSL on its own."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ipr_agent import wire

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "wire-v1.json").read_text())


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    if not Path("/usr/include/openssl/evp.h").exists():
        pytest.fail("OpenSSL headers are missing: install libssl-dev (.ci/run does)")
    out = tmp_path_factory.mktemp("c") / "encode"
    subprocess.run([shutil.which("cc") or "gcc", "-O2", "-Wall", "-Werror", "-o", str(out),
                    str(ROOT / "nginx_module" / "t" / "encode.c"), str(ROOT / "nginx_module" / "ipr_wire.c"),
                    "-lcrypto"], check=True)
    return out


def stdin_for(vector) -> str:
    h = vector["header"]
    lines = [f"H {h['key_id']} {h['sender_id']} {h['instance_id']} {h['sequence']} {h['time_ms']} "
             f"{h['tag_len']} {vector['secret']}"]
    for r in vector["records"]:
        t = r["traffic_type"].encode().hex() or "-"
        lines.append(" ".join(str(x) for x in [
            "R", wire.pack_address(r["client"]).hex(), wire.pack_address(r["server"]).hex(), t,
            r["server_port"], r["status"], r["flags"], r["http_version"], r["requests"],
            r["duration_us"], r["response_bytes"], r["wire_bytes"], r["retrans_bytes"],
            r["data_segs"], r["retrans_segs"], r["rtt_us"], r["rttvar_us"], r["min_rtt_us"],
            r["delivery_rate"]]))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_the_c_encoder_reproduces_each_golden_vector(encoder, vector):
    out = subprocess.run([str(encoder)], input=stdin_for(vector), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == vector["datagram"]


@pytest.mark.parametrize("name", [b"caf\xc3\xa9 v\t", b"a\0b", b"0123456789abcdefXYZ", b"static"])
def test_the_c_encoder_sends_a_traffic_type_as_the_receiver_reads_it(encoder, name):
    vector = {**VECTORS["valid"][0], "records": [{**VECTORS["valid"][0]["records"][0], "traffic_type": "x"}]}
    line = stdin_for(vector).replace(" " + b"x".hex() + " ", " " + name.hex() + " ")
    out = subprocess.run([str(encoder)], input=line, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    sent = bytes.fromhex(out.stdout.strip())[wire.HEADER_SIZE + 32:wire.HEADER_SIZE + 48]
    # Printable ASCII then NULs: what a receiver reads unchanged.
    assert wire.TYPE_OK.fullmatch(sent) and sent == wire.clean_type(name[:16].replace(b"\0", b"?"))
