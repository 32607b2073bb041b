-- Device credentials (docs/security.md). A watch logs in to the broker with its device id as
-- username and a random password that is shown once, when it is issued, and kept only as two
-- hashes (services/devices/credentials.py):
--   password_hash  scrypt: what Anxin checks a presented password against;
--   broker_hash    Mosquitto's password-file format ($7$, PBKDF2-SHA512), so that
--                  `anxin devices broker-files` can rewrite the broker's files at any time.
-- One row per device: rotating replaces it, revoking deletes it (devices.revoked_at says when).
-- A device without a row (e.g. one seeded before credentials existed) cannot log in to a
-- broker that requires passwords.
CREATE TABLE device_credentials (
    device_id      text PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
    password_hash  text NOT NULL CHECK (password_hash LIKE 'scrypt$%'),
    broker_hash    text NOT NULL CHECK (broker_hash LIKE '$7$%'),
    issued_at      timestamptz NOT NULL DEFAULT now()
);
