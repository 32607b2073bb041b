-- Location history on TimescaleDB: the same columns and key as the plain flavour, as a
-- hypertable with one-day chunks, compressed per device after a week. The retention policy
-- is applied from settings by services/storage/partitions.py.
CREATE TABLE positions (
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    t            timestamptz NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    acc          real NOT NULL,
    src          text NOT NULL,
    spd          real,
    hdg          real,
    battery      smallint,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, t, seq)
);
SELECT create_hypertable('positions', 't', chunk_time_interval => INTERVAL '1 day');
ALTER TABLE positions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 't DESC, seq DESC'
);
SELECT add_compression_policy('positions', INTERVAL '7 days');
