-- Geofences, the engine's memory per (device, fence), and the events it emits.

-- Every insert, update or (soft) delete of a fence takes a new version from this sequence, so
-- a cache that remembers the highest version it has seen can fetch exactly what changed.
CREATE SEQUENCE fence_version_seq;

CREATE TABLE fences (
    fence_id    uuid PRIMARY KEY,
    wearer_id   text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('safe', 'nogo')),
    feature     jsonb NOT NULL,  -- the validated GeoJSON Feature, as the API returns it
    version     bigint NOT NULL DEFAULT nextval('fence_version_seq'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX fences_wearer_name_idx ON fences (wearer_id, name) WHERE deleted_at IS NULL;
CREATE INDEX fences_version_idx ON fences (version);

-- Changed only by compare-and-set on ``version`` (services/ingestor/fence_stage.py): two
-- ingestor replicas deciding the same device at once cannot both emit one transition.
CREATE TABLE fence_state (
    device_id           text NOT NULL REFERENCES devices ON DELETE CASCADE,
    fence_id            uuid NOT NULL REFERENCES fences ON DELETE CASCADE,
    inside              boolean,
    since               timestamptz,
    pending_exit_since  timestamptz,
    active              boolean NOT NULL DEFAULT true,
    version             bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, fence_id)
);
CREATE INDEX fence_state_fence_idx ON fence_state (fence_id);

-- What happened to a wearer, in the order the backend learnt it: fence transitions and
-- alarms (one event per stored alarm, never one per re-send). Alerts are derived from these.
CREATE TABLE events (
    event_id     bigserial PRIMARY KEY,
    device_id    text NOT NULL REFERENCES devices ON DELETE CASCADE,
    wearer_id    text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    kind         text NOT NULL,
    fence_id     uuid REFERENCES fences ON DELETE SET NULL,
    t            timestamptz NOT NULL,
    lat          double precision,
    lon          double precision,
    acc          real,
    distance_m   real,
    detail       jsonb NOT NULL DEFAULT '{}',  -- kind-specific: an alarm's mode, fix_error
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_wearer_idx ON events (wearer_id, event_id DESC);
