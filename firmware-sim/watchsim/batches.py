"""Packing the offline buffer into ``Batch`` messages the ingestor will accept.

Two limits apply: at most ``max_items`` items (fixes + alarms) per batch, and a payload below
the ingestor's ``max_payload_bytes`` (64 KiB), which it dead-letters whole otherwise. 500
fixes are about 65 KB of JSON, so the byte limit is the one that usually binds.
Alarms go first: if anything of a batch is decoded first, it should be those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from services.protocol import Alarm, Batch, Fix


@dataclass(frozen=True)
class PackedBatch:
    payload: bytes
    fix_seqs: tuple[int, ...]
    alarm_seqs: tuple[int, ...]


def _size(item: dict[str, Any]) -> int:
    return len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()) + 1


def pack_batches(
    alarms: list[Alarm], fixes: list[Fix], max_items: int = 500, max_bytes: int = 60_000
) -> list[PackedBatch]:
    items: list[tuple[Alarm | Fix, dict[str, Any]]] = [
        (m, m.model_dump(mode="json", exclude_none=True)) for m in [*alarms, *fixes]
    ]
    overhead = len(Batch().model_dump_json()) + 8
    out: list[PackedBatch] = []
    chunk: list[tuple[Alarm | Fix, dict[str, Any]]] = []
    size = overhead
    for item in items:
        n = _size(item[1])
        if chunk and (len(chunk) >= max_items or size + n > max_bytes):
            out.append(_pack(chunk))
            chunk, size = [], overhead
        chunk.append(item)
        size += n
    if chunk:
        out.append(_pack(chunk))
    return out


def _pack(chunk: list[tuple[Alarm | Fix, dict[str, Any]]]) -> PackedBatch:
    batch = Batch(
        fixes=[d for m, d in chunk if isinstance(m, Fix)],
        alarms=[d for m, d in chunk if isinstance(m, Alarm)],
    )
    return PackedBatch(
        payload=batch.model_dump_json(exclude_none=True).encode(),
        fix_seqs=tuple(m.seq for m, _ in chunk if isinstance(m, Fix)),
        alarm_seqs=tuple(m.seq for m, _ in chunk if isinstance(m, Alarm)),
    )
