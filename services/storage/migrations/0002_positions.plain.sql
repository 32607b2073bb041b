-- Location history on plain PostgreSQL: range-partitioned by day so that retention drops a
-- partition instead of deleting rows. Partitions are created ahead (and on demand) by
-- services/storage/partitions.py. The key includes t because a partitioned table's unique
-- keys must hold the partition column; (device_id, t, seq) also serves "history of a device
-- over a time range" directly.
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
) PARTITION BY RANGE (t);
