"""Hand-made payloads through real Mosquitto → ``anxin ingest`` → PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg

from services.protocol import Fix, Topics, UplinkKind
from tests.support.broker import MosquittoProcess
from tests.support.procs import AnxinProcess
from tests.support.stack import Watch, count, wait_for


def _fix(seq: int, t: datetime, lat: float = 31.2) -> dict:
    return json.loads(Fix(seq=seq, t=t, lat=lat, lon=121.4, acc=10).model_dump_json())


def test_offline_batch_with_reordered_and_duplicate_fixes_is_stored_once_in_time_order(
    stack: tuple[AnxinProcess, str], broker: MosquittoProcess, topic_prefix: str
) -> None:
    _, db_url = stack
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    fixes = [_fix(s, base + timedelta(minutes=s), lat=31.2 + s / 1000) for s in range(1, 11)]
    shuffled = fixes[5:] + fixes[:5] + fixes[2:4] + [fixes[7]]  # reordered, 3 duplicates
    watch = Watch(broker.url, topic_prefix, "w00001")
    try:
        watch.publish(UplinkKind.BATCH, json.dumps({"v": 1, "fixes": shuffled}))
        # The same batch again, as a watch whose upload was interrupted would send it.
        watch.publish(UplinkKind.BATCH, json.dumps({"v": 1, "fixes": shuffled[:6]}))
        wait_for(lambda: count(db_url, "SELECT count(*) FROM positions") == 10, 15, "10 fixes")
    finally:
        watch.close()
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT seq FROM positions WHERE device_id = 'w00001' ORDER BY t"
        ).fetchall()
        state = conn.execute(
            "SELECT fix_seq FROM device_state WHERE device_id = 'w00001'"
        ).fetchone()
    assert [r[0] for r in rows] == list(range(1, 11))
    assert state == (10,)  # the newest by device time, not the last to arrive


def test_malformed_payloads_are_dead_lettered_with_reasons_and_ingest_goes_on(
    stack: tuple[AnxinProcess, str], broker: MosquittoProcess, topic_prefix: str
) -> None:
    ingestor, db_url = stack
    now = datetime.now(UTC)
    good = _fix(1, now)
    bad: dict[str, bytes] = {
        "not JSON": b"\x00\x01 definitely not json",
        "wrong types": json.dumps(good | {"lat": "north", "seq": "one"}).encode(),
        "missing fields": json.dumps({"v": 1, "seq": 2}).encode(),
        "lat 91": json.dumps(good | {"seq": 3, "lat": 91}).encode(),
        "NaN": json.dumps(good | {"seq": 4, "lon": float("nan")}).encode(),
        "1 MB": b'{"v":1,"pad":"' + b"x" * (1024 * 1024) + b'"}',
        "a day ahead": json.dumps(
            good | {"seq": 5, "t": (now + timedelta(days=1)).isoformat()}
        ).encode(),
    }
    expected_reason = {
        "not JSON": "not valid JSON",
        "wrong types": "lat: Input should be a valid number",
        "missing fields": "t: Field required",
        "lat 91": "lat: Input should be less than or equal to 90, got 91",
        "NaN": "finite",
        "1 MB": "exceeds the 262144-byte limit",
        "a day ahead": "ahead of the server clock",
    }
    watch = Watch(broker.url, topic_prefix, "w00002")
    try:
        for payload in bad.values():
            watch.publish(UplinkKind.LOC, payload)
        watch.publish(UplinkKind.LOC, json.dumps(good))
        wait_for(lambda: count(db_url, "SELECT count(*) FROM positions") == 1, 15, "the good fix")
        wait_for(
            lambda: count(db_url, "SELECT count(*) FROM dead_letters") == len(bad), 15, "letters"
        )
    finally:
        watch.close()
    with psycopg.connect(db_url) as conn:
        letters = conn.execute(
            "SELECT payload, reason, device_id, topic FROM dead_letters ORDER BY id"
        ).fetchall()
    by_payload = {bytes(p): (r, d, t) for p, r, d, t in letters}
    for name, payload in bad.items():
        reason, device, topic = by_payload[payload]  # kept byte for byte
        assert expected_reason[name] in reason, (name, reason)
        assert device == "w00002"
        assert topic == Topics(topic_prefix).uplink("w00002", UplinkKind.LOC)
    assert ingestor.proc is not None and ingestor.proc.poll() is None  # still alive


def test_an_unprovisioned_device_is_refused(
    stack: tuple[AnxinProcess, str], broker: MosquittoProcess, topic_prefix: str
) -> None:
    _, db_url = stack
    watch = Watch(broker.url, topic_prefix, "intruder")
    try:
        watch.publish(UplinkKind.LOC, json.dumps(_fix(1, datetime.now(UTC))))
        wait_for(lambda: count(db_url, "SELECT count(*) FROM dead_letters") == 1, 15, "refusal")
    finally:
        watch.close()
    assert count(db_url, "SELECT count(*) FROM positions") == 0
    reason = count(db_url, "SELECT count(*) FROM dead_letters WHERE reason LIKE '%%unknown%%'")
    assert reason == 1
