-- Alerts, the people they reach, and how they reach them.

-- A person who is told about alerts. Accounts come later: ``user_id`` is where a user account
-- will link to its contact, so alerts and deliveries keep referring to contacts unchanged.
CREATE TABLE contacts (
    contact_id   bigserial PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL DEFAULT 'family' CHECK (role IN ('family', 'caregiver')),
    language     text NOT NULL DEFAULT 'zh-CN',
    tz           text NOT NULL DEFAULT 'Asia/Shanghai',
    quiet_start  time,  -- low and medium alerts wait until quiet_end; high and critical never
    quiet_end    time,
    user_id      bigint UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

-- Where a contact is reached besides the live feed: e-mail, a signed webhook, Web Push.
CREATE TABLE contact_channels (
    channel_id  bigserial PRIMARY KEY,
    contact_id  bigint NOT NULL REFERENCES contacts ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('email', 'webhook', 'webpush')),
    address     text NOT NULL,  -- e-mail address, webhook URL, push endpoint
    secret      text,           -- webhook signing secret (returned once, when created)
    keys        jsonb,          -- Web Push subscription keys {p256dh, auth}
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (contact_id, kind, address)
);

-- Which wearers a contact cares for: they see those wearers' alerts in their feed.
CREATE TABLE care (
    contact_id  bigint NOT NULL REFERENCES contacts ON DELETE CASCADE,
    wearer_id   text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    PRIMARY KEY (contact_id, wearer_id)
);
CREATE INDEX care_wearer_idx ON care (wearer_id);

-- Per wearer, who is told first and who next when nobody acknowledges.
CREATE TABLE escalation_tiers (
    wearer_id       text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    tier            smallint NOT NULL CHECK (tier >= 1),
    contact_ids     bigint[] NOT NULL,
    ack_critical_s  integer NOT NULL DEFAULT 120 CHECK (ack_critical_s > 0),
    ack_high_s      integer NOT NULL DEFAULT 900 CHECK (ack_high_s > 0),
    PRIMARY KEY (wearer_id, tier)
);

CREATE TABLE alerts (
    alert_id            bigserial PRIMARY KEY,
    device_id           text NOT NULL REFERENCES devices ON DELETE CASCADE,
    wearer_id           text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    kind                text NOT NULL,
    severity            smallint NOT NULL CHECK (severity BETWEEN 1 AND 4),
    fence_id            uuid REFERENCES fences ON DELETE SET NULL,
    status              text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'acknowledged', 'resolved')),
    t                   timestamptz NOT NULL,  -- device time of what opened it
    opened_at           timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    occurrences         integer NOT NULL DEFAULT 1,  -- a repeated SOS press joins the alert
    lat                 double precision,
    lon                 double precision,
    acc                 real,
    fix_t               timestamptz,
    location_source     text,
    fix_problem         text,
    battery             smallint,
    detail              jsonb NOT NULL DEFAULT '{}',
    tier                smallint NOT NULL DEFAULT 0,  -- the last tier told (0: nobody yet)
    next_escalation_at  timestamptz,
    acknowledged_at     timestamptz,
    acknowledged_by     bigint REFERENCES contacts ON DELETE SET NULL,
    resolved_at         timestamptz,
    resolved_by         bigint REFERENCES contacts ON DELETE SET NULL,
    resolution_note     text,
    auto_resolved       boolean NOT NULL DEFAULT false
);
-- The rule "one open alert per device, kind and fence", enforced where replicas meet.
CREATE UNIQUE INDEX alerts_one_open_idx ON alerts
    (device_id, kind, COALESCE(fence_id, '00000000-0000-0000-0000-000000000000'::uuid))
    WHERE status <> 'resolved';
CREATE INDEX alerts_wearer_idx ON alerts (wearer_id, alert_id DESC);
CREATE INDEX alerts_unresolved_idx ON alerts (severity DESC, opened_at) WHERE status <> 'resolved';
CREATE INDEX alerts_escalation_idx ON alerts (next_escalation_at)
    WHERE next_escalation_at IS NOT NULL;
CREATE INDEX alerts_device_kind_idx ON alerts (device_id, kind, opened_at DESC);

-- Which events an alert gathered (the first, and every repeat that joined it).
CREATE TABLE alert_events (
    alert_id  bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    event_id  bigint NOT NULL REFERENCES events ON DELETE CASCADE,
    PRIMARY KEY (alert_id, event_id)
);

-- What people and the system did with an alert: opened, joined, escalated, acknowledged,
-- resolved (by a person with a note, or by itself), a delivery given up.
CREATE TABLE alert_log (
    log_id      bigserial PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL,
    contact_id  bigint REFERENCES contacts ON DELETE SET NULL,
    tier        smallint,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_log_alert_idx ON alert_log (alert_id, log_id);

-- Notifications to send, written in the transaction that opens or escalates the alert. The
-- notifier claims due rows with FOR UPDATE SKIP LOCKED (replicas share them) and a lease
-- (``claimed_until``): a notifier killed mid-delivery leaves the row to be claimed again.
CREATE TABLE outbox (
    outbox_id        bigserial PRIMARY KEY,
    alert_id         bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    contact_id       bigint NOT NULL REFERENCES contacts ON DELETE CASCADE,
    channel_id       bigint NOT NULL REFERENCES contact_channels ON DELETE CASCADE,
    channel          text NOT NULL,
    reason           text NOT NULL,  -- opened | escalated
    tier             smallint NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'gave_up')),
    attempts         integer NOT NULL DEFAULT 0,
    not_before       timestamptz NOT NULL DEFAULT now(),
    claimed_until    timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX outbox_due_idx ON outbox (not_before) WHERE status = 'pending';
CREATE INDEX outbox_alert_idx ON outbox (alert_id);

-- Every attempt, per alert, channel and person: the delivery log.
CREATE TABLE deliveries (
    delivery_id  bigserial PRIMARY KEY,
    outbox_id    bigint NOT NULL REFERENCES outbox ON DELETE CASCADE,
    alert_id     bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    contact_id   bigint REFERENCES contacts ON DELETE SET NULL,
    channel      text NOT NULL,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    ok           boolean NOT NULL,
    status_code  integer,
    detail       text
);
CREATE INDEX deliveries_alert_idx ON deliveries (alert_id, delivery_id);

-- The live feed (SSE): every change of an alert, in commit order. Writers take one advisory
-- transaction lock before inserting (services/alerts/feed_sql.py), so feed ids become visible
-- in increasing order and a client resuming after id N can never miss a smaller id.
CREATE TABLE alert_feed (
    feed_id    bigserial PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    wearer_id  text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    type       text NOT NULL,  -- alert.opened | alert.updated | alert.escalated | ...
    alert      jsonb NOT NULL  -- the alert as the API shows it, after the change
);
CREATE INDEX alert_feed_wearer_idx ON alert_feed (wearer_id, feed_id);

-- An alert as the API, the live feed and the notifier's messages show it: one definition.
CREATE VIEW alert_public AS
SELECT a.alert_id, a.wearer_id, a.device_id, a.status, a.severity, a.kind, a.opened_at,
    jsonb_build_object(
        'alert_id', a.alert_id,
        'wearer_id', a.wearer_id,
        'wearer_name', w.name,
        'device_id', a.device_id,
        'kind', a.kind,
        'severity', (ARRAY['low', 'medium', 'high', 'critical'])[a.severity],
        'status', a.status,
        't', a.t,
        'opened_at', a.opened_at,
        'updated_at', a.updated_at,
        'occurrences', a.occurrences,
        'fence', CASE WHEN f.fence_id IS NULL THEN NULL ELSE
            jsonb_build_object('fence_id', f.fence_id, 'name', f.name, 'kind', f.kind) END,
        'location', CASE WHEN a.lat IS NULL THEN NULL ELSE
            jsonb_build_object('lat', a.lat, 'lon', a.lon, 'acc', a.acc, 't', a.fix_t,
                               'source', a.location_source, 'fix_problem', a.fix_problem) END,
        'battery', a.battery,
        'detail', a.detail,
        'tier', a.tier,
        'next_escalation_at', a.next_escalation_at,
        'acknowledged_at', a.acknowledged_at,
        'acknowledged_by', a.acknowledged_by,
        'resolved_at', a.resolved_at,
        'resolved_by', a.resolved_by,
        'resolution_note', a.resolution_note,
        'auto_resolved', a.auto_resolved
    ) AS alert
FROM alerts a
JOIN wearers w ON w.wearer_id = a.wearer_id
LEFT JOIN fences f ON f.fence_id = a.fence_id;
