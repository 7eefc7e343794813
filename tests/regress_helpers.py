"""An archive made to hold known regressions, and known noise that must not
show: two 24-hour periods a week apart (the "before" and the "now" of the
regression report and of the alert rules).

Stable origin ASes (65001..65010) keep their retransmit rate (1 to 3 %,
±20 % per hour), RTT shape (±10 % per bucket per hour), traffic and
delivery rate (±10 % per hour) in both periods, over routers 1 and 2 via
transit 64600 or directly. The known changes, each on its own AS:

- 65100 (FR, direct via router 3): retransmits 0.5 % -> 5 %;
- 65200 and 65201 (JP), the only traffic of router 2 via 64601: the RTT
  histogram moves up by two buckets (p50 about 30 -> 67 ms, p95 about
  100 -> 200 ms): that uplink's RTT doubled;
- 65400 (ES, direct via router 3): traffic almost gone (100 responses in
  one hour now, against about 500 an hour before);
- 65500 (IT, direct via router 3): the same bytes take three times as long
  (delivery rate / 3).

Noise that must not show:

- 65300 (BR): 3 responses per period, 0 -> 20 of 30 segments retransmitted;
- 65600 (NL): retransmits 1 % -> 1.6 % (large enough, +0.6 pp, ×1.6) over
  6,000 data segments a period: z = 2.9, below the test's 3.09;
- 65700 (US, direct via router 1): bursty, every other hour without
  retransmits and the others at 4 % before, 7 % now (2 % -> 3.5 % over the
  period, large enough, and z ≈ 60 as independent segments), but the hours
  vary so much that the quasi-binomial test does not pass.
"""
import random
from datetime import datetime, timedelta, timezone

import pytest

from ipr.traffic import tables
from web_helpers import Fact, module_archive

UTC = timezone.utc
NORMAL = [0, 0, 0.02, 0.08, 0.25, 0.45, 0.15, 0.05, 0, 0, 0, 0]
SLOW = [0, 0, 0, 0.02, 0.08, 0.25, 0.45, 0.15, 0.05, 0, 0, 0]
MID_MS = [0.5, 1.5, 3.5, 7.5, 15, 35, 75, 150, 350, 750, 1500, 3000]
STABLE = list(range(65001, 65011))
COUNTRY = {65100: "FR", 65200: "JP", 65201: "JP", 65300: "BR", 65400: "ES", 65500: "IT", 65600: "NL", 65700: "US",
           **{a: ("DE", "NL", "US")[i % 3] for i, a in enumerate(STABLE)}}
NAMES = {65100: "RETRANS-UP", 65200: "SLOW-ONE", 65201: "SLOW-TWO", 65300: "TINY", 65400: "GONE",
         65500: "SLUGGISH", 65600: "SMALL-NOISY", 65700: "BURSTY", **{a: f"STABLE-{a - 65000:02d}" for a in STABLE},
         64600: "TRANSIT-GOOD", 64601: "TRANSIT-SLOW"}


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def periods(now: datetime) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """((start, end) now, (start, end) a week before): 24 whole hours ending
    two hours ago, archived (older than the running hour)."""
    end = floor_hour(now) - timedelta(hours=2)
    start = end - timedelta(hours=24)
    return (start, end), (start - timedelta(days=7), end - timedelta(days=7))


def sums(rng: random.Random, requests: int, bytes_per_request: float, retrans_rate: float, shape: list,
         delivery_bps: float, jitter: float = 0.1) -> dict:
    s = {m: 0 for m in tables.SUMS}
    s["records"] = s["requests"] = s["status_2xx"] = requests
    s["connections"] = max(1, requests // 2)
    s["response_bytes"] = int(requests * bytes_per_request * rng.uniform(1 - jitter, 1 + jitter))
    s["wire_bytes"] = s["response_bytes"] + 300 * requests
    s["data_segs"] = s["response_bytes"] // 1400 + 1
    s["retrans_segs"] = int(round(s["data_segs"] * retrans_rate * rng.uniform(1 - 2 * jitter, 1 + 2 * jitter)))
    s["bytes_records"] = s["segs_records"] = requests
    hist = [int(round(requests * w * rng.uniform(1 - jitter, 1 + jitter))) for w in shape]
    for i, n in enumerate(hist):
        s[f"rtt_h{i}"] = n
    s["tcpinfo_records"] = sum(hist)
    s["rtt_sum_us"] = int(sum(n * m * 1000 for n, m in zip(hist, MID_MS)))
    s["duration_sum_us"] = int(s["response_bytes"] / (delivery_bps * rng.uniform(1 - jitter, 1 + jitter)) * 1e6)
    return s


def fact(t, router, origin, neighbor, s) -> Fact:
    path = str(origin) if neighbor == origin else f"{neighbor} {origin}"
    prefix = f"198.18.{origin % 256}.0/24"   # one prefix per AS, all distinct here
    return Fact(t, router, "web", prefix, origin, neighbor, COUNTRY[origin], path, s, 5000)


def regression_facts(now: datetime, seed: int = 3) -> list[Fact]:
    rng = random.Random(seed)
    (start, _), (base_start, _) = periods(now)
    rates = {a: rng.uniform(0.01, 0.03) for a in STABLE}
    out = []
    for period, begin in (("before", base_start), ("now", start)):
        later = period == "now"
        for h in range(24):
            t = begin + timedelta(hours=h, minutes=rng.randint(0, 59))
            for a in STABLE:
                for router, neighbor in ((1, 64600), (2, 64600), (1, a)):
                    out.append(fact(t, router, a, neighbor, sums(rng, rng.randint(150, 250), 100_000, rates[a],
                                                                 NORMAL, 2e6)))
            out.append(fact(t, 3, 65100, 65100, sums(rng, 500, 100_000, 0.05 if later else 0.005, NORMAL, 2e6)))
            for a in (65200, 65201):
                out.append(fact(t, 2, a, 64601, sums(rng, 400, 50_000, 0.01, SLOW if later else NORMAL, 2e6)))
            if not later or h == 5:
                out.append(fact(t, 3, 65400, 65400, sums(rng, 100 if later else 500, 100_000, 0.01, NORMAL, 2e6)))
            out.append(fact(t, 3, 65500, 65500, sums(rng, 300, 100_000, 0.01, NORMAL, 2e6 / 3 if later else 2e6)))
            burst = (0.07 if later else 0.04) if h % 2 else 0.0
            out.append(fact(t, 1, 65700, 65700, sums(rng, 500, 100_000, burst, NORMAL, 2e6)))
        # Noise: once per period.
        t = begin + timedelta(hours=7, minutes=30)
        tiny = sums(rng, 3, 14_000, 0.0, NORMAL, 2e6, jitter=0)
        tiny["data_segs"], tiny["retrans_segs"] = 30, 20 if later else 0
        out.append(fact(t, 1, 65300, 64600, tiny))
        noisy = sums(rng, 250, 33_600, 0.01, NORMAL, 2e6, jitter=0)
        noisy["data_segs"], noisy["retrans_segs"] = 6000, 96 if later else 60
        out.append(fact(t, 1, 65600, 64600, noisy))
    return out


def setup_regression_names() -> None:
    from ipr.routing.models import ASName, Router
    for i, name in ((1, "edge-par1"), (2, "edge-fra1"), (3, "edge-ams1")):
        Router.objects.update_or_create(pk=i, defaults={"name": name, "asn": 64496})
    for asn, name in NAMES.items():
        ASName.objects.update_or_create(asn=asn, defaults={"name": name})


# One "now" for the archive the fixture below writes and the tests that read it.
NOW = datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def facts(django_db_setup, django_db_blocker):
    """The regression archive of NOW, written once per test module."""
    yield from module_archive(django_db_blocker, setup_regression_names, lambda: regression_facts(NOW))
