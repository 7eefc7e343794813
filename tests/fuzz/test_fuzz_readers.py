"""Short fuzz runs of every reader of outside input: mutated real samples in,
only the documented error types out (see harness.py for each rule).

Derandomized: the same inputs on every run, so CI is repeatable and a
failure here is a finding to fix, never noise. The long, coverage-guided
runs are ``make fuzz`` (tests/fuzz/run.py)."""
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import harness
from mutations import mutated

TARGETS = harness.targets()
SEEDS = {name: t.seeds() for name, t in TARGETS.items()}
# Per reader, chosen so the whole short fuzz set stays near a minute.
EXAMPLES = {"wire": 1500, "spool": 500, "mrt": 400, "bird": 400, "frr_text": 400, "frr_json": 400,
            "rir": 400, "asnames": 400, "mmdb": 300}


def short_run(name):
    return settings(max_examples=EXAMPLES[name], derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_is_read_without_breaking_the_rule(name):
    # The seeds are good input: a rule that fails on them is wrong, not the
    # reader. Only MRT and FRR text have no seed made here (their seeds are
    # the real samples, there when shared/ is beside the checkout).
    assert SEEDS[name] or name in ("mrt", "frr_text")
    for data in SEEDS[name]:
        harness.in_child(TARGETS[name].check, data) if TARGETS[name].isolate else TARGETS[name].check(data)


# Inputs the fuzz runs found breaking the rule, one folder per harness: each
# is replayed on every run, so a finding stays a failing test until its
# reader is fixed, and a regression test after.
FINDINGS = sorted((Path(__file__).parent / "findings").glob("*/*"))


@pytest.mark.parametrize("path", FINDINGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_input_a_fuzz_run_found_is_now_read_or_refused(path):
    target = TARGETS[path.parent.name]
    data = path.read_bytes()
    harness.in_child(target.check, data) if target.isolate else target.check(data)


def fuzz(name):
    @short_run(name)
    @given(data=mutated(SEEDS[name], TARGETS[name].max_len))
    def run(data):
        target = TARGETS[name]
        harness.in_child(target.check, data) if target.isolate else target.check(data)
    return run


test_the_datagram_decoder_and_the_collector_agree_on_mutated_datagrams = fuzz("wire")
test_the_spool_reader_reads_or_refuses_mutated_segments = fuzz("spool")
test_the_mrt_parser_reads_or_refuses_mutated_dumps = fuzz("mrt")
test_the_bird_parser_reads_or_refuses_mutated_dumps = fuzz("bird")
test_the_frr_text_parser_reads_or_refuses_mutated_dumps = fuzz("frr_text")
test_the_frr_json_parser_reads_or_refuses_mutated_dumps = fuzz("frr_json")
test_the_rir_parser_reads_or_refuses_mutated_files = fuzz("rir")
test_the_as_names_parser_reads_or_refuses_mutated_lists = fuzz("asnames")
test_the_mmdb_reader_reads_or_refuses_mutated_databases = fuzz("mmdb")
