"""Hypothesis strategies: inputs made by mutating real seeds.

The mutations are those a byte-level fuzzer applies (bit flips, truncation,
byte insertion and deletion, splices of two seeds, interesting integers
written over the data), drawn through hypothesis so a failing input shrinks
to a small one.
"""
from __future__ import annotations

import struct

from hypothesis import strategies as st

INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1]
TOKENS = [b"\n", b" ", b"\t", b"|", b"{", b"}", b"[", b"]", b",", b":", b'"', b"/", b".",
          b"\x00", b"\xff", b"-1", b"4294967296", b"18446744073709551616", b"1e999", b"NaN",
          b"::", b"255.255.255.255/33", b"ffff::/129", b"\xc3\x28", b"\r\n"]


@st.composite
def mutated(draw, seeds: list[bytes], max_len: int = 1 << 16):
    """A seed with a few mutations applied, or (rarely) plain random bytes."""
    if not seeds or draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=256))
    data = bytearray(draw(st.sampled_from(seeds))[:max_len])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 6))
        at = draw(st.integers(0, len(data)))
        if op == 0 and data:       # flip one bit
            i = min(at, len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:              # truncate
            del data[at:]
        elif op == 2:              # insert bytes
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == 3:              # delete a run
            del data[at:at + draw(st.integers(1, 64))]
        elif op == 4:              # splice: this seed's head, another's tail
            other = draw(st.sampled_from(seeds))
            data = data[:at] + other[draw(st.integers(0, len(other))):]
        elif op == 5:              # an interesting integer over the data
            value = draw(st.sampled_from(INTERESTING))
            size, order = draw(st.sampled_from([(1, ">"), (2, ">"), (4, ">"), (8, ">"), (2, "<"), (4, "<"), (8, "<")]))
            packed = struct.pack(order + {1: "B", 2: "H", 4: "I", 8: "Q"}[size], value & ((1 << (8 * size)) - 1))
            data[at:at + size] = packed
        else:                      # a token that text parsers care about
            data[at:at] = draw(st.sampled_from(TOKENS))
    return bytes(data[:max_len])
