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
    ingestor_batch_wait_ms: int = Field(
        default=50, ge=1, description="Longest a message waits for its batch to fill"
    )
    ingestor_session_expiry_s: int = Field(
        default=7 * 24 * 3600, description="How long the broker keeps an absent replica's session"
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
        default=None, description="Bearer token for the API until accounts exist (issue: people)"
    )
    offline_after_s: int = Field(
        default=600, description="No fix or heartbeat this long: the device counts as offline"
    )

    # Embedded servers for the demo.
    data_dir: str = Field(default="var", description="Where the demo keeps embedded server data")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
