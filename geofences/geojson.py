"""Fence documents: GeoJSON Features ⇄ ``Fence``, with every problem reported at once.

The file format a family's helper edits, the API's request body and the CLI's input are the
same FeatureCollection, so one parser guards all three. Properties (see docs/geofences.md):
``name``, ``wearer``, ``kind`` ("safe" | "nogo"), ``radius_m`` (Point only), ``margin_m``,
``dwell_s`` and ``schedule``. Unknown properties are refused, because a silently ignored typo
("dwel_s") would change when a family is alarmed; the simplestyle styling keys that map
editors such as geojson.io add are accepted and dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from geofences.model import Fence, FenceKind
from geofences.schedule import parse_schedule, schedule_to_json
from geofences.validate import FenceValidationError, check_geometry, fmt_num, is_number

__all__ = ["FenceValidationError", "fence_from_stored", "fence_to_feature", "fences_from_geojson"]

MAX_NAME = 80
MARGIN_RANGE = (0.0, 500.0)
DWELL_RANGE = (0.0, 3600.0)
DEFAULT_MARGIN_M = 25.0
DEFAULT_DWELL_S = {FenceKind.SAFE: 60.0, FenceKind.NOGO: 0.0}
KNOWN = {"name", "wearer", "kind", "radius_m", "margin_m", "dwell_s", "schedule"}
STYLING = {
    "title", "description", "stroke", "stroke-width", "stroke-opacity", "fill",
    "fill-opacity", "marker-color", "marker-size", "marker-symbol",
}  # fmt: skip


def _features(doc: object) -> list[Any] | str:
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
        return feats if isinstance(feats, list) else "FeatureCollection has no features list"
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        return [doc]
    return "document is not a GeoJSON FeatureCollection or Feature"


def _number(props: Mapping[str, Any], key: str, default: float, rng: tuple[float, float],
            unit: str, problems: list[str]) -> float:  # fmt: skip
    v = props.get(key, default)
    if not is_number(v):
        problems.append(f"{key} {v!r} is not a number")
        return default
    if not rng[0] <= v <= rng[1]:
        problems.append(f"{key} {fmt_num(v)} is outside {fmt_num(rng[0])}–{fmt_num(rng[1])} {unit}")
    return float(v)


def _parse_feature(
    feat: Any, default_tz: str, wearer_id: str | None
) -> tuple[Fence | None, list[str]]:
    """One Feature → Fence, or its problems (without the "feature N" prefix)."""
    if not isinstance(feat, dict) or feat.get("type") != "Feature":
        return None, ['is not a GeoJSON Feature ({"type": "Feature", ...})']
    props = feat.get("properties") or {}
    if not isinstance(props, dict):
        return None, ["properties must be an object"]
    problems = [f"unknown property {k!r}" for k in props if k not in KNOWN | STYLING]

    name = props.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("name is missing")
    elif len(name.strip()) > MAX_NAME:
        problems.append(f"name is {len(name.strip())} characters long (at most {MAX_NAME})")

    wearer = props.get("wearer")
    if wearer_id is not None:
        if wearer is not None and wearer != wearer_id:
            problems.append(f"wearer {wearer!r} does not match the wearer {wearer_id!r}")
        wearer = wearer_id
    elif not isinstance(wearer, str) or not wearer.strip():
        problems.append("wearer is missing")

    kind_raw = props.get("kind")
    kind = FenceKind(kind_raw) if kind_raw in ("safe", "nogo") else None
    if kind is None:
        problems.append(f'unknown kind {kind_raw!r} (use "safe" or "nogo")')

    margin = _number(props, "margin_m", DEFAULT_MARGIN_M, MARGIN_RANGE, "m", problems)
    dwell_default = DEFAULT_DWELL_S[kind or FenceKind.SAFE]
    dwell = _number(props, "dwell_s", dwell_default, DWELL_RANGE, "s", problems)

    schedule = None
    if props.get("schedule") is not None:
        parsed = parse_schedule(props["schedule"], default_tz)
        if isinstance(parsed, list):
            problems += parsed
        else:
            schedule = parsed

    geo_problems, geometry, radius = check_geometry(feat.get("geometry"), props.get("radius_m"))
    problems += geo_problems

    fid = feat.get("id")
    if fid is not None and (isinstance(fid, bool) or not isinstance(fid, str | int) or fid == ""):
        problems.append(f"id {fid!r} must be a non-empty string or an integer")
    if problems:
        return None, problems
    assert geometry is not None and kind is not None and isinstance(name, str)
    assert isinstance(wearer, str)
    return Fence(
        fence_id=str(fid) if fid is not None else str(uuid.uuid4()),
        wearer_id=wearer,
        name=name.strip(),
        kind=kind,
        geometry=geometry,
        radius_m=radius,
        schedule=schedule,
        margin_m=margin,
        dwell_s=dwell,
    ), []


def fences_from_geojson(
    doc: object,
    *,
    default_tz: str = "Asia/Shanghai",
    wearer_id: str | None = None,
    existing_names: Mapping[str, set[str]] | None = None,
) -> list[Fence]:
    """Parse and validate a FeatureCollection (or one Feature) into fences.

    ``wearer_id``: every feature belongs to that wearer (the API path); a feature's own
    ``wearer`` must then be absent or equal. ``existing_names``: {wearer: names already
    stored}, for the duplicate-name check (exclude the fence being replaced). Names compare
    case- and space-insensitively. Raises FenceValidationError with *all* problems, each
    prefixed ``feature N ("name")`` (N counts from 0, as in ``features[N]``)."""
    feats = _features(doc)
    if isinstance(feats, str):
        raise FenceValidationError([feats])
    problems: list[str] = []
    fences: list[Fence] = []
    seen_names: dict[tuple[str, str], int] = {}
    seen_ids: dict[str, int] = {}
    existing = {
        w: {n.strip().casefold() for n in names} for w, names in (existing_names or {}).items()
    }
    for i, feat in enumerate(feats):
        props = feat.get("properties") if isinstance(feat, dict) else None
        props = props if isinstance(props, dict) else {}
        name, wearer = props.get("name"), wearer_id or props.get("wearer")
        label = f'feature {i} ("{name}")' if isinstance(name, str) else f"feature {i}"
        fence, found = _parse_feature(feat, default_tz, wearer_id)
        problems += [f"{label}: {p}" for p in found]
        # Names and ids are checked even on an otherwise broken feature: all problems at once.
        if isinstance(name, str) and name.strip() and isinstance(wearer, str):
            key = (wearer, name.strip().casefold())
            if key in seen_names:
                problems.append(
                    f"{label}: duplicate name {name.strip()!r} for wearer {wearer} "
                    f"(feature {seen_names[key]} has it too)"
                )
            elif key[1] in existing.get(wearer, set()):
                problems.append(
                    f"{label}: wearer {wearer} already has a fence named {name.strip()!r}"
                )
            seen_names.setdefault(key, i)
        fid = feat.get("id") if isinstance(feat, dict) else None
        if isinstance(fid, str | int) and not isinstance(fid, bool):
            if str(fid) in seen_ids:
                problems.append(
                    f"{label}: duplicate id {str(fid)!r} (feature {seen_ids[str(fid)]})"
                )
            seen_ids.setdefault(str(fid), i)
        if fence is not None:
            fences.append(fence)
    if problems:
        raise FenceValidationError(problems)
    return fences


def fence_to_feature(fence: Fence) -> dict[str, Any]:
    """A Feature in exactly the format ``fences_from_geojson`` accepts (it round-trips; the
    store's ``version`` is not part of the document)."""
    props: dict[str, Any] = {"name": fence.name, "wearer": fence.wearer_id, "kind": str(fence.kind)}
    if fence.radius_m is not None:
        props["radius_m"] = fence.radius_m
    props["margin_m"] = fence.margin_m
    props["dwell_s"] = fence.dwell_s
    if fence.schedule is not None:
        props["schedule"] = schedule_to_json(fence.schedule)
    return {
        "type": "Feature",
        "id": fence.fence_id,
        "geometry": fence.geometry,
        "properties": props,
    }


def fence_from_stored(
    feature: Mapping[str, Any],
    fence_id: str,
    wearer_id: str,
    version: int,
    *,
    default_tz: str = "Asia/Shanghai",
) -> Fence:
    """The Fence of a Feature the store wrote with ``fence_to_feature`` after
    ``fences_from_geojson`` had validated it: trusted, so not validated again (that is most of
    the ~140 µs a fence the full parser costs, and an ingestor reloads every fence at start).
    The ids and version come from the row's columns, as the row is authoritative.

    Only the schedule is parsed (the stored form is its JSON): a row that no longer parses —
    written by hand, or by an older release — raises ValueError (or KeyError / TypeError for
    a missing or malformed property) for the caller to log and skip."""
    props = feature["properties"]
    kind = FenceKind(props["kind"])
    schedule = None
    if props.get("schedule") is not None:
        parsed = parse_schedule(props["schedule"], default_tz)
        if isinstance(parsed, list):
            raise ValueError(f"fence {fence_id}: stored schedule: {'; '.join(parsed)}")
        schedule = parsed
    radius = props.get("radius_m")
    return Fence(
        fence_id=fence_id,
        wearer_id=wearer_id,
        name=props["name"],
        kind=kind,
        geometry=feature["geometry"],
        radius_m=None if radius is None else float(radius),
        schedule=schedule,
        margin_m=float(props.get("margin_m", DEFAULT_MARGIN_M)),
        dwell_s=float(props.get("dwell_s", DEFAULT_DWELL_S[kind])),
        version=version,
    )
