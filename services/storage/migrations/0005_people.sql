-- People: accounts, organisations, who may see which wearer, sessions, and the privacy audit.

CREATE TABLE organisations (
    org_id      bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    user_id          bigserial PRIMARY KEY,
    email            text NOT NULL,
    name             text NOT NULL,
    role             text NOT NULL CHECK (role IN ('family', 'caregiver', 'org_admin')),
    org_id           bigint REFERENCES organisations ON DELETE SET NULL,
    password_hash    text NOT NULL,  -- Argon2id (services/people/passwords.py)
    failed_logins    integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    phone            text,           -- E.164; listen-in may only call a guardian's number
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (role = 'family' OR org_id IS NOT NULL)
);
CREATE UNIQUE INDEX users_email_idx ON users (lower(email));

-- A user is told about alerts as a contact: the link the alerts issue left room for.
ALTER TABLE contacts ADD CONSTRAINT contacts_user_fk
    FOREIGN KEY (user_id) REFERENCES users ON DELETE CASCADE;

-- A login: the refresh token (hashed) rotates on every refresh; revoking the session (logout,
-- or a refresh token used twice) makes every access token of it useless at once.
CREATE TABLE sessions (
    session_id    uuid PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    refresh_hash  text NOT NULL,
    spent_hash    text,  -- the refresh token this one replaced: seen again = stolen
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_refresh_idx ON sessions (refresh_hash);
CREATE INDEX sessions_spent_idx ON sessions (spent_hash);

-- Family relations: the primary guardian, and family members the guardian invited. An
-- invitation gives nothing until the invitee accepts it.
CREATE TABLE guardianships (
    wearer_id    text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    user_id      bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    role         text NOT NULL CHECK (role IN ('guardian', 'family')),
    status       text NOT NULL CHECK (status IN ('invited', 'active')),
    invited_by   bigint REFERENCES users ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    accepted_at  timestamptz,
    PRIMARY KEY (wearer_id, user_id)
);
CREATE INDEX guardianships_user_idx ON guardianships (user_id);
CREATE UNIQUE INDEX guardianships_one_guardian_idx ON guardianships (wearer_id)
    WHERE role = 'guardian';

-- A guardian grants a care relation to an organisation (a community care centre): its
-- caregivers then see the wearer (coarsely, unless an alert is open) and the wearer's alerts.
CREATE TABLE care_grants (
    wearer_id   text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    org_id      bigint NOT NULL REFERENCES organisations ON DELETE CASCADE,
    granted_by  bigint REFERENCES users ON DELETE SET NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (wearer_id, org_id)
);

-- The wearer's recorded consent to listen-in (who recorded it, when; withdrawn_at ends it).
CREATE TABLE consents (
    consent_id    bigserial PRIMARY KEY,
    wearer_id     text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('listen_in')),
    recorded_by   bigint REFERENCES users ON DELETE SET NULL,
    note          text NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    withdrawn_at  timestamptz
);
CREATE INDEX consents_wearer_idx ON consents (wearer_id, kind);

-- Every look at a wearer's location, every listen-in: who, what, when. The guardian reads it.
CREATE TABLE location_audit (
    audit_id    bigserial PRIMARY KEY,
    wearer_id   text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    user_id     bigint REFERENCES users ON DELETE SET NULL,
    viewer      text NOT NULL,  -- the name shown to the wearer, kept if the account goes
    action      text NOT NULL,  -- location | history | live_feed | listen_in | export
    precision   text NOT NULL DEFAULT 'exact' CHECK (precision IN ('exact', 'coarse')),
    at          timestamptz NOT NULL DEFAULT now(),
    notified    boolean NOT NULL DEFAULT false  -- a "viewed by" notice went to the watch
);
CREATE INDEX location_audit_wearer_idx ON location_audit (wearer_id, audit_id DESC);
CREATE INDEX location_audit_notice_idx ON location_audit (wearer_id, user_id, at DESC)
    WHERE notified;

-- Commands to a watch (the downlink outbox): pending → sent (the broker took it; it waits in
-- the watch's persistent session while the watch is offline) → acknowledged | failed (the
-- watch's ack) | expired (no ack before expires_at). ``command_id`` is what the watch echoes.
CREATE TABLE commands (
    command_id    text PRIMARY KEY,
    device_id     text NOT NULL REFERENCES devices ON DELETE CASCADE,
    wearer_id     text NOT NULL REFERENCES wearers ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('locate', 'speed_dial', 'listen_in', 'viewed_by')),
    payload       jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'sent', 'acknowledged', 'failed', 'expired')),
    requested_by  bigint REFERENCES users ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    acked_at      timestamptz,
    expires_at    timestamptz NOT NULL,
    detail        text
);
CREATE INDEX commands_open_idx ON commands (created_at) WHERE status IN ('pending', 'sent');
CREATE INDEX commands_wearer_idx ON commands (wearer_id, created_at DESC);
