import sys
from pathlib import Path

# The harnesses (this folder) and the suite's helpers (tests/) import by name.
HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
