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
