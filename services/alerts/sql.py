"""SQL shared by the writers of alerts: the ingestor and the notifier (sync psycopg) and the
API (async psycopg). One statement per idea, so that the three cannot drift apart.

Every change of an alert appends one row to ``alert_feed`` under ``FEED_LOCK`` (an advisory
transaction lock taken just before the insert): feed ids then become visible in increasing
order, which is what lets an SSE client resume after ``Last-Event-ID`` without a gap.
"""

from __future__ import annotations

FEED_LOCK = 0x616E78696E_FEED  # "anxin" + FEED
FEED_CHANNEL = "anxin_feed"
OUTBOX_CHANNEL = "anxin_outbox"

LOCK_FEED = "SELECT pg_advisory_xact_lock(%s)"

APPEND_FEED = (
    "INSERT INTO alert_feed (alert_id, wearer_id, type, alert)"
    " SELECT alert_id, wearer_id, %(type)s, alert FROM alert_public WHERE alert_id = %(alert_id)s"
    " RETURNING feed_id"
)
NOTIFY_FEED = f"SELECT pg_notify('{FEED_CHANNEL}', %s::text)"
NOTIFY_OUTBOX = f"SELECT pg_notify('{OUTBOX_CHANNEL}', '')"

LOG = (
    "INSERT INTO alert_log (alert_id, action, contact_id, tier, detail)"
    " VALUES (%(alert_id)s, %(action)s, %(contact_id)s, %(tier)s, %(detail)s)"
)

# Open an alert, or join the open one with the same (device, kind, fence): a repeated SOS
# press counts as an occurrence of the alert already ringing, its severity can only rise, and
# its location follows the newest fix.
RAISE = """
INSERT INTO alerts AS a (device_id, wearer_id, kind, severity, fence_id, t, lat, lon, acc, fix_t,
                         location_source, fix_problem, battery, detail)
VALUES (%(device_id)s, %(wearer_id)s, %(kind)s, %(severity)s, %(fence_id)s, %(t)s, %(lat)s,
        %(lon)s, %(acc)s, %(fix_t)s, %(location_source)s, %(fix_problem)s, %(battery)s,
        %(detail)s)
ON CONFLICT (device_id, kind, COALESCE(fence_id, '00000000-0000-0000-0000-000000000000'::uuid))
    WHERE status <> 'resolved'
DO UPDATE SET
    occurrences = a.occurrences + 1,
    severity = GREATEST(a.severity, excluded.severity),
    updated_at = now(),
    battery = COALESCE(excluded.battery, a.battery),
    lat = CASE WHEN excluded.lat IS NOT NULL AND (a.fix_t IS NULL OR excluded.fix_t >= a.fix_t)
               THEN excluded.lat ELSE a.lat END,
    lon = CASE WHEN excluded.lat IS NOT NULL AND (a.fix_t IS NULL OR excluded.fix_t >= a.fix_t)
               THEN excluded.lon ELSE a.lon END,
    acc = CASE WHEN excluded.lat IS NOT NULL AND (a.fix_t IS NULL OR excluded.fix_t >= a.fix_t)
               THEN excluded.acc ELSE a.acc END,
    location_source = CASE WHEN excluded.lat IS NOT NULL
               AND (a.fix_t IS NULL OR excluded.fix_t >= a.fix_t)
               THEN excluded.location_source ELSE a.location_source END,
    fix_problem = CASE WHEN excluded.lat IS NOT NULL
               AND (a.fix_t IS NULL OR excluded.fix_t >= a.fix_t)
               THEN excluded.fix_problem ELSE a.fix_problem END,
    fix_t = CASE WHEN excluded.lat IS NOT NULL AND (a.fix_t IS NULL OR excluded.fix_t >= a.fix_t)
               THEN excluded.fix_t ELSE a.fix_t END
RETURNING alert_id, (xmax = 0) AS opened, severity, tier, status,
    (SELECT s.severity FROM alerts s WHERE s.alert_id = a.alert_id) AS severity_before
"""

LINK_EVENT = "INSERT INTO alert_events (alert_id, event_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"

# The condition of a non-critical alert is gone: it resolves itself.
AUTO_RESOLVE = """
UPDATE alerts SET status = 'resolved', resolved_at = now(), updated_at = now(),
    auto_resolved = true, next_escalation_at = NULL
WHERE device_id = %(device_id)s AND kind = %(kind)s
    AND fence_id IS NOT DISTINCT FROM %(fence_id)s::uuid
    AND status <> 'resolved' AND severity < 4
RETURNING alert_id
"""

ACKNOWLEDGE = """
UPDATE alerts SET status = 'acknowledged', acknowledged_at = now(),
    acknowledged_by = %(contact_id)s, next_escalation_at = NULL, updated_at = now()
WHERE alert_id = %(alert_id)s AND status = 'open'
RETURNING alert_id, tier
"""

RESOLVE = """
UPDATE alerts SET status = 'resolved', resolved_at = now(), resolved_by = %(contact_id)s,
    resolution_note = %(note)s, next_escalation_at = NULL, updated_at = now(),
    acknowledged_at = COALESCE(acknowledged_at, now()),
    acknowledged_by = COALESCE(acknowledged_by, %(contact_id)s)
WHERE alert_id = %(alert_id)s AND status <> 'resolved'
RETURNING alert_id, tier
"""

ALERT_STATUS = "SELECT status FROM alerts WHERE alert_id = %s"

TIERS = (
    "SELECT tier, contact_ids, ack_critical_s, ack_high_s FROM escalation_tiers"
    " WHERE wearer_id = %s ORDER BY tier"
)
CARING = "SELECT contact_id FROM care WHERE wearer_id = %s ORDER BY contact_id"

# The channels of the contacts to tell, with what quiet hours need.
CONTACT_CHANNELS = """
SELECT c.contact_id, c.tz, c.quiet_start, c.quiet_end, ch.channel_id, ch.kind
FROM contacts c JOIN contact_channels ch ON ch.contact_id = c.contact_id AND ch.enabled
WHERE c.contact_id = ANY(%s)
ORDER BY c.contact_id, ch.channel_id
"""

ENQUEUE = """
INSERT INTO outbox (alert_id, contact_id, channel_id, channel, reason, tier, idempotency_key,
                    not_before)
VALUES (%(alert_id)s, %(contact_id)s, %(channel_id)s, %(channel)s, %(reason)s, %(tier)s,
        %(key)s, %(not_before)s)
ON CONFLICT (idempotency_key) DO NOTHING
"""

SET_TIER = "UPDATE alerts SET tier = %s, next_escalation_at = %s WHERE alert_id = %s"
