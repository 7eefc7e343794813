"""The README's first command: `manage.py demo` on the embedded default
(SQLite, tasks in process), from the collector to the archive."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_runs_the_whole_path_and_its_archive_holds_what_the_spool_held(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(IPR_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="ipr.settings")
    for args in (["migrate", "--noinput", "-v0"], ["demo", "--synthetic", "300"]):
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    added, spooled = map(int, re.search(r"This run added (\d+) requests to the archive; the spool held (\d+)",
                                        out).groups())
    assert added == spooled > 300 * 10
    # The made-up table routes every synthetic client: the unrouted are none
    # of the archive's traffic (the loopback site's own client is in 127/8).
    origin = out[out.index("By origin AS"):out.index("By neighbour AS")]
    assert "AS65" in origin and "unrouted" not in origin
    neighbours = out[out.index("By neighbour AS"):out.index("By country")]
    assert {"AS64601", "AS64602", "AS64603"} <= set(re.findall(r"AS\d+", neighbours))
    assert re.search(r"^   [A-Z]{2} ", out[out.index("By country"):], re.M)
