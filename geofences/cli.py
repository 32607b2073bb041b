"""``anxin fences check FILE``: validate a fence file before it reaches the database.

One line per problem on stderr and exit status 1, so a helper editing a file sees every
mistake at once and a CI step fails on any; a summary on stdout and 0 when the file is good.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from geofences.geojson import FenceValidationError, fences_from_geojson


def check_file(path: Path, *, default_tz: str = "Asia/Shanghai") -> int:
    """Validate ``path``; print the problems (stderr) or a summary (stdout); 1 or 0."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
        return 1
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        print(f"{path}: not valid JSON: {e}", file=sys.stderr)
        return 1
    try:
        fences = fences_from_geojson(doc, default_tz=default_tz)
    except FenceValidationError as e:
        for problem in e.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return 1
    kinds = Counter(str(f.kind) for f in fences)
    wearers = len({f.wearer_id for f in fences})
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"{len(fences)} fences OK ({detail or 'none'}; {wearers} wearers)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geofences.cli", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a GeoJSON fence file")
    check.add_argument("file", type=Path)
    check.add_argument("--tz", default="Asia/Shanghai", help="time zone for schedules without one")
    args = ap.parse_args(argv)
    return check_file(args.file, default_tz=args.tz)


if __name__ == "__main__":
    raise SystemExit(main())
