"""The compiled MRT parser against its pure-Python twin on mutated inputs:
identical batches, Stats and errors for each (see test_routing_mrt_native).

Derandomized, as every short fuzz run here: the same inputs on each run.
Each input runs in a forked child, so a crash of the compiled code fails
that input instead of the test process."""
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness
from mutations import mutated
from test_routing_mrt_native import addpath_and_generic, both, equal_values, legacy_table, many_peers

SEEDS = harness.mrt_seeds() + [addpath_and_generic(), legacy_table(), equal_values(), many_peers(3, 5)]
SHORT = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def compare(data: bytes, accept_truncated: bool, chunk: int | None) -> None:
    from ipr.routing.dumps import mrt

    if chunk:
        mrt.CHUNK = chunk  # in the child only
    both(data, accept_truncated=accept_truncated)


@SHORT
@given(mutated(SEEDS, max_len=8192), st.booleans(), st.sampled_from([None, 1, 100]))
def test_both_parsers_agree_on_mutated_dumps(data, accept_truncated, chunk):
    harness.in_child(lambda d: compare(d, accept_truncated, chunk), data)


@SHORT
@given(st.sampled_from(SEEDS[-4:]), st.data())
def test_both_parsers_agree_on_dumps_with_a_length_or_count_overwritten(seed, data):
    # Lengths and counts are where a C reader goes past its buffer: overwrite
    # a 16- or 32-bit field anywhere with an extreme value.
    buf = bytearray(seed)
    at = data.draw(st.integers(0, len(buf) - 4))
    size = data.draw(st.sampled_from([2, 4]))
    value = data.draw(st.sampled_from([0, 1, 2, 0x7F, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFFFF]))
    buf[at:at + size] = struct.pack(">H" if size == 2 else ">I", value & ((1 << (8 * size)) - 1))
    accept_truncated = data.draw(st.booleans())
    harness.in_child(lambda d: compare(d, accept_truncated, None), bytes(buf))
