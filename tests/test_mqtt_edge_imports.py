"""The ingestor's MQTT edge decides no fences, so it must not carry the fence engine: numpy and
Shapely cost ~25 MB of resident memory in a process (docs/performance.md), and the edge runs
beside a store process that has its own copy."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "shapely", "geofences")
PROBE = """
import sys
import services.cli, services.ingestor.service
from services.ingestor.batch_store import BatchStore
from services.settings import Settings
store = BatchStore(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"), {takes})
print(",".join(m for m in {heavy} if m in sys.modules))
"""


def _imported(takes_fixes: bool) -> set[str]:
    """Heavy modules in a fresh interpreter after importing the edge and building a lane."""
    code = PROBE.format(takes=takes_fixes, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(filter(None, out.strip().split(",")))


def test_the_edge_and_its_alarm_lane_do_not_import_the_fence_engine() -> None:
    assert _imported(takes_fixes=False) == set()


def test_the_lane_that_takes_fixes_does() -> None:
    assert _imported(takes_fixes=True) == set(HEAVY)
