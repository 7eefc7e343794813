"""Real retransmissions: the records' retrans_segs add up to the kernel's
tcpi_total_retrans of the server's socket.

The test makes its own network namespace with a veth pair: nginx listens
on the host side, the client runs inside the namespace. An nftables rule
in the namespace drops 3% of the server's packets as they reach the client,
so the server really retransmits. (netem is not built into every kernel;
nftables' random drop on the client side does the same job. A drop on the
server's own output path would not do: TCP sees a local send error and
sends again without counting a retransmit.) The
loss is on only while large files are sent. After a final small request,
the server socket's total retransmit count, read with ss, is exactly the
sum of the records' deltas.
"""
import json
import os
import random
import re
import subprocess
import sys

import pytest

from agent_helpers import Receiver
from nginx_helpers import Nginx
from test_nginx_module import BASE, SERVER
from test_wsgi_gunicorn import records_for

CLIENT = r"""
import http.client, json, socket, struct, sys
host, port, tags = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
conn = http.client.HTTPConnection(host, port, timeout=60)
def get(path, tag):
    conn.request("GET", path, headers={"X-Tag": tag})
    return len(conn.getresponse().read())
sizes = [get("/big.bin", t) for t in tags[:-1]]
print(json.dumps({"sizes": sizes}), flush=True)
sys.stdin.readline()                         # the test turns the loss off
sizes.append(get("/small.txt", tags[-1]))
info = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512)
print(json.dumps({"sizes": sizes, "rx": struct.unpack_from("=Q", info, 128)[0]}), flush=True)
sys.stdin.readline()                         # the test has read the server's counters
conn.close()
"""


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


@pytest.fixture
def lossy_link():
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root (CI runs as root)")
    n = random.randrange(1000, 9999)
    ns, vh, vc, net = f"ipr-loss-{n}", f"vh{n}", f"vc{n}", f"198.18.{n % 250}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", vh, "type", "veth", "peer", "name", vc)
        sh("ip", "link", "set", vc, "netns", ns)
        sh("ip", "addr", "add", f"{net}.1/24", "dev", vh)
        sh("ip", "link", "set", vh, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{net}.2/24", "dev", vc)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", vc, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, vh, f"{net}.1", f"ipr_loss_{n}"
    finally:
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", vh, check=False)


def server_total_retrans(host: str, port: int) -> int:
    out = sh("ss", "-tinH", "state", "established", "src", f"{host}:{port}").stdout
    m = re.search(r"retrans:\d+/(\d+)", out)
    assert "ESTAB" in out or out.strip(), out
    return int(m.group(1)) if m else 0


def test_records_carry_the_kernels_retransmits(tmp_path, lossy_link):
    ns, vh, host, table = lossy_link
    receiver = Receiver()
    ng = Nginx(tmp_path, BASE.format(port=receiver.port), SERVER.replace("UPSTREAM", "1"), host=host)
    (ng.dir / "html" / "big.bin").write_bytes(os.urandom(4_000_000))
    (ng.dir / "html" / "small.txt").write_bytes(b"hello\n")
    ng.start()
    tags = ["loss-0", "loss-1", "loss-2", "loss-3"]
    client = None
    try:
        nft = ["ip", "netns", "exec", ns, "nft"]
        sh(*nft, "add", "table", "inet", table)
        sh(*nft, f"add chain inet {table} in {{ type filter hook input priority 0; }}")
        sh(*nft, f"add rule inet {table} in tcp sport {ng.port} numgen random mod 1000 < 30 drop")
        client = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, host, str(ng.port), *tags],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = json.loads(client.stdout.readline())
        assert first["sizes"] == [4_000_000] * 3
        sh(*nft, "delete", "table", "inet", table)  # no loss for the final request
        client.stdin.write("go\n")
        client.stdin.flush()
        final = json.loads(client.stdout.readline())
        total = server_total_retrans(host, ng.port)
        client.stdin.write("close\n")
        client.stdin.flush()
        client.wait(30)
    finally:
        if client and client.poll() is None:
            client.kill()
        ng.stop()
    found = records_for(receiver, tags)
    records = [found[t][0][1] for t in tags]
    receiver.close()
    assert total > 0, "the lossy link made no retransmission"
    assert sum(r.retrans_segs for r in records) == total
    assert sum(r.retrans_bytes for r in records) > 0
    # And still to the byte: what was handed to TCP is what the client got.
    assert sum(r.wire_bytes - r.retrans_bytes for r in records) == final["rx"]
