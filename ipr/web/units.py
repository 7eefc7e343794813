"""The units operators read: bytes and bits/s with SI prefixes, %, ms."""
from __future__ import annotations


def _si(value: float, unit: str, base: float = 1000.0) -> str:
    for prefix in ("", "k", "M", "G", "T", "P", "E"):
        if abs(value) < base or prefix == "E":
            if prefix == "":
                return f"{value:.0f} {unit}"
            return f"{value:.3g} {prefix}{unit}" if abs(value) < 100 else f"{value:.0f} {prefix}{unit}"
        value /= base
    return f"{value} {unit}"


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
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def human_int(value) -> str:
    if value is None:
        return "–"
    return f"{int(value):,}".replace(",", "\u202f")  # a narrow no-break space between thousands


def human_pp(value, digits: int = 2) -> str:
    """A difference of two ratios in percentage points: -0.0123 → '−1.23 pp'."""
    if value is None:
        return "–"
    return f"{value * 100:+.{digits}f} pp".replace("-", "−")
