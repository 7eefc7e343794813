"""Log lines under systemd carry their syslog priority for the journal
(journalctl -p warning), and no time stamp; elsewhere they start with the
time. The collector and the Django side write them the same way."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_under_the_journal_the_collector_marks_a_warning_with_priority_4(tmp_path):
    (tmp_path / "collector.toml").write_text('listen = ["127.0.0.1:0"]\nmetrics_listen = ""\n')
    env = {**os.environ, "JOURNAL_STREAM": "8:1234"}
    process = subprocess.Popen([sys.executable, "-m", "collector", "-c", str(tmp_path / "collector.toml")],
                               cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stderr.readline() for _ in range(2)]
    finally:
        process.terminate()
        process.wait(30)
    warning = next(line for line in lines if "no sender keys" in line)
    info = next(line for line in lines if "listening on" in line)
    assert re.match(r"<4>\d+ WARNING no sender keys", warning), warning
    assert re.match(r"<6>\d+ INFO listening on", info), info


def test_ipr_marks_each_line_of_an_error_with_priority_3_and_outside_the_journal_starts_with_the_time(tmp_path):
    code = ("import logging, django; django.setup(); log = logging.getLogger('ipr.test')\n"
            "try:\n    1 / 0\nexcept ZeroDivisionError:\n    log.exception('it broke')\n"
            "log.info('fine')\n")
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    env.update(DJANGO_SETTINGS_MODULE="ipr.settings", IPR_DATA_DIR=str(tmp_path))
    journal = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             env={**env, "JOURNAL_STREAM": "8:1234"}, check=True).stderr.splitlines()
    assert journal[0] == "<3>ERROR ipr.test it broke"
    assert journal[1].startswith("<3>Traceback") and any("ZeroDivisionError" in l for l in journal)
    assert all(line.startswith("<3>") for line in journal[:-1])
    assert journal[-1] == "<6>INFO ipr.test fine"
    plain = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                           env=env, check=True).stderr.splitlines()
    stamp = time.strftime("%Y-%m-%d")
    assert plain[0].startswith(stamp) and plain[0].endswith(" ERROR ipr.test it broke"), plain[0]
