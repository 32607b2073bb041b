"""All of Anxin's configuration, read once from the environment (prefix ``ANXIN_``).

Nothing else in the code base reads ``os.environ``: a service asks ``get_settings()``.
Secrets (the API token, database passwords inside URLs) are ``SecretStr`` or are never
logged, so a settings dump cannot leak them.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANXIN_", extra="ignore")

    # Servers. Unset means "none configured": `anxin demo` then starts embedded ones,
    # the other commands refuse to guess and say so.
    mqtt_url: str | None = Field(
        default=None, description="Broker, e.g. mqtt://user:pass@127.0.0.1:1883"
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL/TimescaleDB, e.g. postgresql://postgres@127.0.0.1/anxin",
    )
    topic_prefix: str = Field(
        default="anxin", description="First topic level; tests use their own to stay apart"
    )

    # Ingestor.
    ingestor_client_id: str = Field(
        default="anxin-ingestor-1",
        description="Stable per replica (…-1, …-2): the broker keeps its session across restarts",
    )
    ingestor_group: str = Field(default="ingestors", description="Shared-subscription group")
    ingestor_shared_subscription: bool = Field(
        default=True,
        description="Subscribe via $share/<group>/ so replicas split the load. The demo turns it"
        " off on the embedded broker, whose $share handling is unsafe (docs/embedded.md)",
    )
    ingestor_batch_size: int = Field(default=500, ge=1, le=20000)
    ingestor_alarm_lane: bool = Field(
        default=True,
        description="Alarms on a connection (session: <client id>-alarms) of their own, stored"
        " without waiting for a batch, so an SOS never queues behind location fixes",
    )
    ingestor_batch_wait_ms: int = Field(
        default=50, ge=1, description="Longest a message waits for its batch to fill"
    )
    mqtt_keepalive_s: int = Field(
        default=30,
        ge=1,
        le=65535,
        description="MQTT keep-alive of the ingestor's connections: a silent link is found"
        " dead within 1.5 × this",
    )
    ingestor_session_expiry_s: int = Field(
        default=7 * 24 * 3600, description="How long the broker keeps an absent replica's session"
    )
    ingestor_receive_maximum: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="MQTT 5 ReceiveMaximum: the most unacknowledged messages the broker hands"
        " this replica, hence all it holds in memory, also while the database is down"
        " (at most this × max_payload_bytes). Default 2 × ingestor_batch_size",
    )
    device_rate_per_s: float = Field(
        default=5.0,
        ge=0,
        description="Flood limit: messages a second one device may sustain; alarms and state"
        " are never limited, the excess is dead-lettered as rate_limited. 0 turns it off",
    )
    device_burst: int = Field(
        default=60, ge=1, description="Flood limit: messages one device may send at once"
    )
    max_payload_bytes: int = Field(
        default=256 * 1024, description="Larger payloads are dead-lettered (kept, not parsed)"
    )
    max_future_skew_s: int = Field(
        default=300, description="A device time further ahead than this is rejected"
    )
    max_fix_age_days: int = Field(
        default=30, description="Older device times are rejected (offline buffers are shorter)"
    )

    # Storage.
    retention_days: int = Field(default=90, description="Location history kept this long")
    partition_days_ahead: int = Field(default=2, description="Daily partitions created ahead")

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_token: SecretStr | None = Field(
        default=None,
        description="Operator token: full access for ops scripts and benchmarks, never given to"
        " families or caregivers (they log in). Unset: no operator access",
    )
    auth_secret: SecretStr | None = Field(
        default=None,
        description="Signs access tokens (HMAC-SHA256); the API refuses to start without it",
    )
    access_token_ttl_s: int = Field(default=900, ge=30, description="Access token lifetime")
    refresh_token_ttl_days: int = Field(default=30, ge=1, description="A login lasts this long")
    offline_after_s: int = Field(
        default=600, description="No fix or heartbeat this long: the device counts as offline"
    )

    # Alerts and the notifier (services/alerts, services/notifier).
    alert_bad_fix_accuracy_m: float = Field(
        default=300.0,
        description="An alarm whose fix is less accurate than this is located by the last"
        " known fix instead (both are shown)",
    )
    notifier_poll_s: float = Field(
        default=1.0, gt=0, description="Safety-net poll when no NOTIFY arrives"
    )
    notifier_lease_s: float = Field(
        default=30.0, gt=0, description="A claimed delivery not finished in this time is retried"
    )
    notifier_max_attempts: int = Field(
        default=8, ge=1, description="Deliveries given up (and recorded) after this many tries"
    )
    notifier_retry_base_s: float = Field(
        default=2.0, gt=0, description="First retry delay; doubles per attempt, capped at 10 min"
    )
    offline_scan_s: float = Field(default=15.0, gt=0, description="How often offline is checked")
    http_timeout_s: float = Field(default=10.0, gt=0, description="Webhook and push requests")
    smtp_host: str | None = Field(default=None, description="E-mail relay; unset: no e-mail")
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_sender: str = "Anxin <alerts@anxin.invalid>"
    vapid_private_key: SecretStr | None = Field(
        default=None,
        description="Web Push VAPID private key (PEM or base64url raw); unset: no Web Push",
    )
    vapid_subject: str = Field(
        default="mailto:alerts@anxin.invalid", description="VAPID 'sub' claim (mailto: or https:)"
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000", description="Where people open the app (alert links)"
    )

    # Embedded servers for the demo.
    data_dir: str = Field(default="var", description="Where the demo keeps embedded server data")

    # Broker service accounts (docs/security.md). Read only by `anxin devices broker-files`,
    # which hashes them into Mosquitto's password file; each service logs in with its own in
    # its ANXIN_MQTT_URL (mqtt://anxin.ingestor:PASSWORD@host). Unset: no such account.
    broker_ingestor_password: SecretStr | None = Field(
        default=None,
        description="Broker account anxin.ingestor: reads every uplink, writes alarm receipts",
    )
    broker_commands_password: SecretStr | None = Field(
        default=None,
        description="Broker account anxin.commands: writes commands to watches (the dispatcher)",
    )
    broker_ops_password: SecretStr | None = Field(
        default=None,
        description="Broker account anxin.ops: reads broker statistics ($SYS) only; healthcheck",
    )
    map_tile_url: str = Field(
        default="",
        description="Map tiles for the web app, a Leaflet URL template such as"
        " https://tile.example.org/{z}/{x}/{y}.png. Empty: no tiles (a plain background with"
        " the wearers and fences; the app works offline and tells no tile server where anyone is)",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
