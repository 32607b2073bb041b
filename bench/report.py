"""Ratios between the phases, and the table printed at the end of a run."""

from __future__ import annotations

from typing import Any

OTHER_CPU_NOISE_S = 1.5


def _rate(result: dict[str, Any], section: str, key: str) -> float | None:
    value = result.get(section, {}).get(key)
    return float(value) if value else None


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _bracketed(before: float | None, after: float | None) -> float | None:
    """A reference measured before and after the phases it judges: their mean (the machine's
    speed drifts within minutes), or the one measured when the other was not."""
    return (before + after) / 2 if before is not None and after is not None else before


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    q0 = _rate(result, "broker_qos0", "msgs_per_s")
    q1 = _rate(result, "broker_qos1", "msgs_per_s")
    q1_after = _rate(result, "broker_qos1_after", "msgs_per_s")
    reference = _bracketed(q1, q1_after)
    naive_before = _rate(result, "naive", "fixes_per_s")
    naive_after = _rate(result, "naive_after", "fixes_per_s")
    naive = _bracketed(naive_before, naive_after)
    one = _rate(result, "ingest_1", "fixes_per_s")
    two = _rate(result, "ingest_2", "fixes_per_s")
    batches = _rate(result, "batches", "fixes_per_s")
    return {
        # The QoS 1 ceiling measured before and after the ingest phases, averaged.
        "broker_qos1_reference": round(reference, 1) if reference is not None else None,
        "ingest_1_to_broker_qos1": _div(one, reference),
        "ingest_2_to_broker_qos1": _div(two, reference),
        "broker_qos1_after_to_before": _div(q1_after, q1),
        "ingest_2_to_ingest_1": _div(two, one),
        # The naive baseline likewise, before and after.
        "naive_reference": round(naive, 1) if naive is not None else None,
        "naive_after_to_before": _div(naive_after, naive_before),
        "ingest_1_to_naive": _div(one, naive),
        "ingest_2_to_naive": _div(two, naive),
        "batches_to_naive": _div(batches, naive),
        "batches_to_ingest_1": _div(batches, one),
        "broker_qos1_to_qos0": _div(q1, q0),
    }


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def table(result: dict[str, Any]) -> str:
    p = result.get("parameters", {})
    m = result.get("machine", {})
    r = result.get("ratios", {})
    head = (
        f"Anxin ingest benchmark: {p.get('devices', 0):,} devices, {p.get('fixes', 0):,} fixes"
        f" per phase, {p.get('publishers')} publisher processes,"
        f" {p.get('fences', 0):,} fences ({p.get('fence_states_seeded', 0):,} states settled)\n"
        f"{m.get('nproc')} CPUs ({m.get('cpu_model', '?')}), Mosquitto {m.get('mosquitto')},"
        f" PostgreSQL {m.get('postgres')}, Python {m.get('python')}"
        f" (pure-Python yardstick: {m.get('python_loop_2m_ms')} ms)\n"
    )
    cols = ("", "rate", "vs QoS 1", "vs naive", "ingestor CPU s", "µs/fix", "peak RSS MB",
            "stored/published")  # fmt: skip
    rows: list[tuple[str, ...]] = [cols]
    for key, label in (("broker_qos0", "broker ceiling, QoS 0"),
                       ("broker_qos1", "broker ceiling, QoS 1"),
                       ("broker_qos1_after", "  again, after the ingest")):  # fmt: skip
        s = result.get(key)
        if s:
            rows.append((label, f"{_n(s['msgs_per_s'])} msg/s", "", "", "", "", "",
                         f"{s['received']:,}/{s['published']['messages']:,} rx"))  # fmt: skip
    for key, label, vs_q1, vs_naive in (
        ("ingest_1", "ingest, 1 ingestor", "ingest_1_to_broker_qos1", "ingest_1_to_naive"),
        ("ingest_2", "ingest, 2 replicas", "ingest_2_to_broker_qos1", "ingest_2_to_naive"),
        ("batches", "offline batches (100/msg)", None, "batches_to_naive"),
    ):
        s = result.get(key)
        if not s:
            continue
        rows.append((
            label,
            f"{_n(s['fixes_per_s'])} fixes/s",
            _x(r.get(vs_q1)) if vs_q1 else "",
            _x(r.get(vs_naive)),
            _n(s["ingestor_cpu_s"], 1),
            _n(s["ingestor_cpu_us_per_fix"]),
            " + ".join(_n(v) for v in s["ingestor_peak_rss_mb"]),
            f"{s['fixes_stored']:,}/{s['fixes_published']:,}",
        ))  # fmt: skip
    for key, label in (("naive", "naive INSERT+COMMIT per fix"),
                       ("naive_after", "  again, after the ingest")):  # fmt: skip
        s = result.get(key)
        if s:
            rows.append((label, f"{_n(s['fixes_per_s'])} fixes/s", "", "", "", "", "",
                         f"{s['stored']:,}/{s['fixes']:,}"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = []
    for i, row in enumerate(rows):
        right = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        cells = [row[0].ljust(widths[0]), *right]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("-" * len(lines[0]))
    st = result.get("storage")
    if st:
        lines.append(
            f"\nstorage: {_n(st['bytes_per_fix'])} bytes per stored fix"
            f" (heap {_n(st['heap_bytes_per_fix'])} + indexes {_n(st['index_bytes_per_fix'])};"
            f" {st['fixes']:,} fixes, {st['total_bytes'] / 2**20:,.1f} MiB)"
        )
    pss = result.get("ingest_1", {}).get("ingestor_max_pss_mb")
    if pss:
        lines.append(
            f"one ingestor's memory: peak RSS of its two processes added up"
            f" {_n(result['ingest_1']['ingestor_peak_rss_mb'][0])} MB (pages the fork shares"
            f" counted twice); PSS, what they occupy together, at most {_n(pss[0])} MB"
        )
    load = result.get("ingest_1", {}).get("ingestor_fence_load_s")
    if load and load[0] is not None:
        lines.append(f"fence cache loaded at start-up in {load[0]:.1f} s (before subscribing)")
    for key in ("broker_qos0", "broker_qos1", "ingest_1", "ingest_2", "batches",
                "broker_qos1_after"):  # fmt: skip
        cpu = result.get(key, {}).get("cpu_s", {})
        # /proc's per-process and machine counters disagree by up to ~1.5 s on a busy phase.
        if cpu.get("machine_busy_s") and cpu.get("other_s", 0) > max(
            OTHER_CPU_NOISE_S, 0.1 * cpu["machine_busy_s"]
        ):
            who = ", ".join(
                f"{o['command']} ({o['cpu_s']} s)" for o in result[key].get("other_processes", [])
            )
            lines.append(
                f"WARNING {key}: other processes used {cpu['other_s']:.1f} of the"
                f" {cpu['machine_busy_s']:.1f} CPU s spent during the phase: figures disturbed"
                + (f"\n  busiest: {who}" if who else "")
            )
    if r.get("broker_qos1_after_to_before"):
        lines.append(
            f"ingest compared with the mean of the two QoS 1 ceilings,"
            f" {_n(r['broker_qos1_reference'])} msg/s (after/before"
            f" {_x(r['broker_qos1_after_to_before'])})"
        )
    if r.get("naive_after_to_before"):
        lines.append(
            f'"vs naive" compares with the mean of the two naive runs,'
            f" {_n(r['naive_reference'])} fixes/s (after/before {_x(r['naive_after_to_before'])})"
        )
    if r.get("ingest_2_to_ingest_1"):
        lines.append(f"two replicas vs one: {_x(r['ingest_2_to_ingest_1'])}")
    lines.append(f"run took {result.get('duration_s')} s; command: {result.get('command')}")
    return head + "\n" + "\n".join(lines)
