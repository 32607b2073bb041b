-- Wearers, their devices, the latest state of each device, alarms, command acks, dead letters.
-- Positions (the big, time-partitioned table) come in 0002, in a plain or a TimescaleDB flavour.

CREATE TABLE wearers (
    wearer_id   text PRIMARY KEY,
    name        text NOT NULL,
    tz          text NOT NULL DEFAULT 'Asia/Shanghai',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    device_id   text PRIMARY KEY,
    wearer_id   text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX devices_wearer_idx ON devices (wearer_id);

-- One row per device: the newest fix (by device time), battery, liveness. "Latest" is kept
-- apart from history so that the family's most frequent question costs one index lookup.
CREATE TABLE device_state (
    device_id          text PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
    fix_t              timestamptz,
    fix_seq            bigint,
    lat                double precision,
    lon                double precision,
    acc                real,
    src                text,
    spd                real,
    hdg                real,
    battery            smallint,
    battery_t          timestamptz,
    charging           boolean,
    last_seen          timestamptz,
    online             boolean NOT NULL DEFAULT false,
    online_changed_at  timestamptz
) WITH (fillfactor = 70);  -- every batch rewrites its devices' rows: leave room for HOT updates

-- Alarms keep the device time as sent; received_at orders them when a watch's clock is wrong.
-- The key includes t as well as seq: a re-send is byte-identical, while a watch whose counter
-- restarted after a reset must not have its new alarms thrown away as duplicates.
CREATE TABLE alarms (
    device_id    text NOT NULL REFERENCES devices ON DELETE CASCADE,
    seq          bigint NOT NULL,
    t            timestamptz NOT NULL,
    type         text NOT NULL,
    mode         text NOT NULL,
    fix_t        timestamptz,
    lat          double precision,
    lon          double precision,
    acc          real,
    src          text,
    fix_error    text,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, seq, t)
);
CREATE INDEX alarms_received_idx ON alarms (received_at DESC);

CREATE TABLE command_acks (
    device_id    text NOT NULL REFERENCES devices ON DELETE CASCADE,
    seq          bigint NOT NULL,
    t            timestamptz NOT NULL,
    cmd          text NOT NULL,
    ok           boolean NOT NULL,
    detail       text,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, seq, t)
);

-- Whatever failed validation, raw, with the reason: nothing is dropped silently.
CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    topic         text NOT NULL,
    device_id     text,
    payload       bytea NOT NULL,
    payload_size  integer NOT NULL,
    reason        text NOT NULL
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at DESC);
