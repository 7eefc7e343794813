import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

# Test clients come from the special-purpose blocks (private-use, loopback,
# documentation), as examples should. A module whose routes resolve them as
# the public addresses they stand for asks for ``routed_stand_ins``.
STAND_INS = ["10.0.0.0/8", "127.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]


@pytest.fixture
def routed_stand_ins(settings):
    settings.ROUTE_SPECIAL = STAND_INS
