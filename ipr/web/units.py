"""The units operators read: bytes and bits/s with SI prefixes, %, ms.

One precision everywhere, here and in ``static/web/charts.js`` alike: three
significant digits (``1.47 GB``, ``14.3 kb/s``, ``13.0 kb/s``, ``143 kb/s``,
``33.6 ms``, ``5.20 ms``), whole numbers below the first prefix (``0 B``,
``512 B``), and percentages with two decimals (``0.10 %``).
"""
from __future__ import annotations

PREFIXES = ("", "k", "M", "G", "T", "P", "E")


def three_digits(value: float) -> str:
    """``value`` with three significant digits, keeping the trailing zeros
    (13 → '13.0'); at most two decimals, none from 100 up."""
    for decimals in (2, 1):
        if abs(round(value, decimals)) < 10 ** (3 - decimals):
            return f"{value:.{decimals}f}"
    return f"{value:.0f}"


def _si(value: float, unit: str) -> str:
    i = 0
    # Rounded first, so that 999,700 B reads 1.00 MB rather than 1000 kB.
    while i < len(PREFIXES) - 1 and abs(float(three_digits(value) if i else round(value))) >= 1000:
        value /= 1000.0
        i += 1
    if i == 0:
        return f"{value:.0f} {unit}"
    return f"{three_digits(value)} {PREFIXES[i]}{unit}"


def human_bytes(value) -> str:
    """'1.23 GB' (SI: 1 GB = 10⁹ bytes)."""
    if value is None:
        return "–"
    return _si(float(value), "B")


def human_bps(value) -> str:
    """'1.23 Gb/s'."""
    if value is None:
        return "–"
    return _si(float(value), "b/s")


def human_pct(value, digits: int = 2) -> str:
    """A ratio as a percentage: 0.0123 → '1.23 %'."""
    if value is None:
        return "–"
    return f"{value * 100:.{digits}f} %"


def human_ms(value) -> str:
    """'33.6 ms', '5.20 ms', '150 ms'."""
    if value is None:
        return "–"
    return f"{three_digits(float(value))} ms"


def human_ms_change(value) -> str:
    """A difference of two times, signed: -2.48 → '−2.48 ms', 2.8 → '+2.80 ms'."""
    if value is None:
        return "–"
    return f"{'−' if value < 0 else '+'}{three_digits(abs(float(value)))} ms"


def human_int(value) -> str:
    if value is None:
        return "–"
    return f"{int(value):,}".replace(",", "\u202f")  # a narrow no-break space between thousands


def human_pp(value, digits: int = 2) -> str:
    """A difference of two ratios in percentage points: -0.0123 → '−1.23 pp'."""
    if value is None:
        return "–"
    return f"{value * 100:+.{digits}f} pp".replace("-", "−")
