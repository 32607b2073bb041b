"""A batch of fixes against every fence of their wearers: one vectorised distance pass, then the
pure state step in device-time order.

The ingestor calls this once per stored batch, inside the transaction that stores the fixes,
and writes ``changed`` back by compare-and-set (``FenceState.version``). The expensive part —
membership and distance for every (fix, fence) pair — is one ``FenceIndex`` call. The state
step is Python, but most pairs only confirm what the state already says (still inside, still
outside, still uncertain), and those are skipped without building a Decision.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np

from geofences.decision import fence_decision, observe_codes
from geofences.engine import FenceIndex
from geofences.model import BatchDecisions, DeviceFix, FenceState

UNKNOWN = FenceState()


def _in_device_time_order(
    index: FenceIndex, fixes: Sequence[DeviceFix], newest_decided: Mapping[str, datetime | None]
) -> tuple[list[DeviceFix], int]:
    """Fixes grouped by device, each device's in time order, without the late ones (not newer
    than the device's newest decided fix, or than an earlier fix of this batch). Returns the
    kept fixes and the number of (fix, fence) pairs dropped as late."""
    by_device: dict[str, list[DeviceFix]] = {}
    for df in fixes:
        by_device.setdefault(df.device_id, []).append(df)
    kept: list[DeviceFix] = []
    late_pairs = 0
    for device_id, group in by_device.items():
        if len(group) > 1:
            group.sort(key=lambda df: df.fix.t)
        newest = newest_decided.get(device_id)
        for df in group:
            if newest is not None and df.fix.t <= newest:
                late_pairs += len(index.wearer_slots(df.wearer_id))
                continue
            newest = df.fix.t
            kept.append(df)
    return kept, late_pairs


def decide_batch(
    index: FenceIndex,
    fixes: Sequence[DeviceFix],
    states: Mapping[tuple[str, str], FenceState],
    newest_decided: Mapping[str, datetime | None],
    *,
    max_accuracy_m: float = 300.0,
) -> BatchDecisions:
    """Decide every fix against its wearer's fences.

    ``states``: the stored state per (device_id, fence_id) (missing: unknown).
    ``newest_decided``: per device, the newest fix time already seen (read, not changed);
    within the batch every fix that is not late advances it, so the caller stores
    max(previous, the device's fix times in this batch) afterwards.
    Returns the states that differ from ``states`` and the transitions, each device's in
    device-time order."""
    out = BatchDecisions()
    kept, late_pairs = _in_device_time_order(index, fixes, newest_decided)
    slot_lists = [index.wearer_slots(df.wearer_id) for df in kept]
    counts = np.fromiter(map(len, slot_lists), np.intp, len(kept))
    slots = np.fromiter(itertools.chain.from_iterable(slot_lists), np.intp, int(counts.sum()))
    fix_of = np.repeat(np.arange(len(kept)), counts)
    out.decisions = len(slots) + late_pairs
    if not len(slots):
        return out

    lat = np.fromiter((df.fix.lat for df in kept), float, len(kept))
    lon = np.fromiter((df.fix.lon for df in kept), float, len(kept))
    acc = np.fromiter((df.fix.acc for df in kept), float, len(kept))
    dist = index.signed_distances_at(slots, lat[fix_of], lon[fix_of])
    codes = observe_codes(dist, acc[fix_of], index.margin[slots])
    acc_ok = ((acc >= 0.0) & (acc <= max_accuracy_m)).tolist()

    current: dict[tuple[str, str], FenceState] = {}
    ids, schedules = index.slot_ids, index.slot_schedules
    for p, (i, s, code) in enumerate(
        zip(fix_of.tolist(), slots.tolist(), codes.tolist(), strict=True)
    ):
        df = kept[i]
        key = (df.device_id, ids[s])
        prior = current.get(key) or states.get(key) or UNKNOWN
        if (
            schedules[s] is None
            and prior.active
            and prior.pending_exit_since is None
            and acc_ok[i]
            and (code == 0 or (code == 1) is prior.inside)
        ):
            continue  # the fix confirms the state: nothing to record, nothing fires
        decision = fence_decision(
            index.fence_at(s), prior, df.fix, float(dist[p]), max_accuracy_m=max_accuracy_m
        )
        if decision.state != prior:
            current[key] = decision.state
        if decision.transition is not None:
            out.transitions.append((df, decision))
    out.changed = {k: v for k, v in current.items() if v != states.get(k, UNKNOWN)}
    return out
