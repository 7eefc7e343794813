"""The beat schedule lives in the database: defaults installed once, admin
edits kept, and the in-process scheduler runs what is enabled."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from cron.schedule import SCHEDULE, install_defaults

pytestmark = pytest.mark.django_db


def test_migrate_installs_every_default_entry_with_its_expiry():
    tasks = {t.name: t for t in PeriodicTask.objects.all()}
    assert set(SCHEDULE) <= set(tasks)
    for name, entry in SCHEDULE.items():
        assert tasks[name].task == entry["task"]
        assert tasks[name].expire_seconds == entry["options"]["expires"]
        if isinstance(entry["schedule"], timedelta):
            assert tasks[name].interval.every == entry["schedule"].total_seconds()


def test_an_entry_an_admin_changed_is_not_reset_by_the_next_migrate():
    task = PeriodicTask.objects.get(name="refresh-due")
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=300, period=IntervalSchedule.SECONDS)
    task.save()
    assert install_defaults() == []
    assert PeriodicTask.objects.get(name="refresh-due").interval.every == 300
    PeriodicTask.objects.filter(name="rollup").delete()
    assert install_defaults() == ["rollup"]


def test_run_schedule_runs_the_enabled_tasks_and_records_each_run(tmp_path, settings):
    settings.SPOOL_DIR = tmp_path
    PeriodicTask.objects.filter(name="retention").update(enabled=False)
    call_command("run_schedule", "--once")
    runs = dict(PeriodicTask.objects.values_list("name", "total_run_count"))
    assert runs["retention"] == 0
    assert all(runs[name] == 1 for name in SCHEDULE if name != "retention")


@pytest.mark.django_db(False)
def test_the_scheduler_stops_at_once_on_sigterm_while_it_waits(tmp_path):
    """systemctl stop sends SIGTERM; a scheduler asleep until its next task
    (up to a minute) must not wait for it, nor be killed."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {"PATH": os.environ["PATH"], "IPR_DATA_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=root, env=env, check=True)
    # Every entry just ran, so the next is due in a minute at the earliest.
    subprocess.run([sys.executable, "manage.py", "shell", "-c",
                    "from django.utils import timezone; from django_celery_beat.models import PeriodicTask; "
                    "PeriodicTask.objects.update(last_run_at=timezone.now())"],
                   cwd=root, env=env, check=True)
    process = subprocess.Popen([sys.executable, "manage.py", "run_schedule"], cwd=root, env=env)
    time.sleep(3)  # into its sleep
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
