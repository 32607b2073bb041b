"""What a fleet run tells people: the 10-second progress line and the JSON summary.

The summary is what tests and benchmarks compare against what the backend stored (e.g. every
``fix_seqs`` entry should be a row), so it lists sequence numbers, not only counts. Neither
output contains credentials: the broker is shown as ``mqtt://host:port``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watchsim.fleet import Fleet, Link

SUMMARY_VERSION = 1


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def progress_line(fleet: Fleet, elapsed_s: float) -> str:
    links = fleet.links
    w = [lk.watch for lk in links]
    pressed = sum(len(x.alarms) for x in w)
    pending = sum(len(x.pending_alarms) for x in w)
    return (
        f"[watchsim] {elapsed_s:.0f}s: {sum(lk.connected for lk in links)}/{len(links)} online, "
        f"fixes {sum(len(lk.fix_seqs) for lk in links)} sent "
        f"{sum(lk.fixes_acked for lk in links)} acked "
        f"{sum(len(x.buffer) for x in w)} buffered, "
        f"alarms {pressed} pressed {pressed - pending} receipted {pending} pending, "
        f"batches {sum(lk.batches_sent for lk in links)}, "
        f"unacked {sum(len(lk.inflight) for lk in links)}" + _clock_note(fleet)
    )


def _clock_note(fleet: Fleet) -> str:
    if fleet.clock.is_real_time:
        return ""
    behind = fleet.clock.behind_s()
    return ", device clock = real" if behind < 0.5 else f", device clock -{behind:.0f}s"


def unreceipted_alarms(fleet: Fleet) -> list[dict[str, Any]]:
    return [
        {
            "device_id": lk.device_id,
            "seq": p.alarm.seq,
            "type": p.alarm.type.value,
            "mode": p.alarm.mode.value,
            "sends": p.sends,
        }
        for lk in fleet.links
        for p in sorted(lk.watch.pending_alarms.values(), key=lambda p: p.alarm.seq)
    ]


def device_summary(link: Link, scenario: dict[str, Any] | None = None) -> dict[str, Any]:
    w = link.watch
    alarms = [
        {
            "seq": a.seq,
            "type": a.type.value,
            "mode": a.mode.value,
            "t": _iso(a.t),
            "sends": a.sends,
            "receipted": a.receipted_t is not None,
            "receipted_t": _iso(a.receipted_t),
        }
        for a in sorted(w.alarms.values(), key=lambda a: a.seq)
    ]
    return {
        "fixes_published": len(link.fix_seqs),
        "fixes_acked": link.fixes_acked,
        "fix_seqs": list(link.fix_seqs),
        "fixes_buffered": len(w.buffer),
        "fixes_dropped": w.fixes_dropped,
        "alarms_pressed": len(alarms),
        "alarms_receipted": sum(a["receipted"] for a in alarms),
        "alarms": alarms,
        "alarm_sends": link.alarm_sends,
        "ui_events": list(w.ui_events),
        "batches_sent": link.batches_sent,
        "heartbeats_sent": link.heartbeats,
        "unacked_publishes": len(link.inflight),
        "refused_publishes": link.refused,
        "connects": link.connects,
        "ignored_commands": list(w.ignored_commands),
        "unknown_receipts": list(w.unknown_receipts),
        # Commands answered (id, type, ok, detail) and what they changed: speed_dial numbers,
        # listen_ins (silent call-backs placed), notices ("viewed by" shown).
        **w.desk.summary(),
        "battery": round(w.battery, 1),
        "home": {"lat": round(w.home.lat, 6), "lon": round(w.home.lon, 6)},
        # What the wearer did: {"kind": "day"|"wander"|"stay", ...} (see fleet._scenario).
        "scenario": scenario or {"kind": "day"},
    }


def summary(fleet: Fleet) -> dict[str, Any]:
    devices = {
        lk.device_id: device_summary(lk, fleet.scenarios.get(lk.device_id)) for lk in fleet.links
    }
    keys = (
        "fixes_published",
        "fixes_acked",
        "fixes_dropped",
        "alarms_pressed",
        "alarms_receipted",
        "batches_sent",
        "unacked_publishes",
    )
    return {
        "version": SUMMARY_VERSION,
        "started_at": _iso(fleet.started_at),
        "ended_at": _iso(fleet.ended_at),
        "exit_code": fleet.exit_code,
        "broker": fleet.cfg.broker.redacted(),
        "topic_prefix": fleet.cfg.topic_prefix,
        "seed": fleet.seed,
        "seq_base": fleet.seq_base,
        "clock": {
            "speed": fleet.clock.speed,
            "start_ago_s": fleet.clock.start_ago_s,
            "device_start": _iso(fleet.clock.start),
            "catch_up_after_s": fleet.clock.catch_up_after_s(),
        },
        "homes": "demo" if fleet.cfg.demo_homes else "random",
        "totals": {"devices": len(devices)}
        | {k: sum(d[k] for d in devices.values()) for k in keys},
        "unreceipted_alarms": unreceipted_alarms(fleet),
        "devices": devices,
    }
