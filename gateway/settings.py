"""Gateway settings from the environment (pydantic-settings), read once per process."""

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_HOME = Path(__file__).resolve().parents[1] / ".hearth"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEARTH_GATEWAY_", extra="ignore", populate_by_name=True)

    # Shared with the rest of Hearth, so read under their common names.
    database_url: str = Field(
        default=f"postgresql://postgres@/hearth?host={_HOME / 'postgres'}",
        validation_alias=AliasChoices("DATABASE_URL", "HEARTH_GATEWAY_DATABASE_URL"),
    )
    redis_url: str = Field(
        default=f"unix://{_HOME / 'redis' / 'redis.sock'}",
        validation_alias=AliasChoices("REDIS_URL", "HEARTH_GATEWAY_REDIS_URL"),
    )
    worker_secret: str = Field(
        default="", validation_alias=AliasChoices("HEARTH_WORKER_SECRET", "HEARTH_GATEWAY_WORKER_SECRET")
    )

    region: str = "local"  # this gateway's region: routing prefers workers of the same region

    # Rate limits: account defaults (accounts_account.rpm_limit / tpm_limit override them); per-key limits default
    # to the account's, and may only be set lower.
    default_rpm_limit: int = 600
    default_tpm_limit: int = 200_000
    key_rpm_limit: int | None = None
    key_tpm_limit: int | None = None
    # max_tokens assumed at admission when the request names none; corrected with real usage afterwards.
    default_max_tokens_estimate: int = 256

    key_cache_ttl_s: float = 30.0  # positive results; revocations arrive by pub/sub, not by TTL
    key_negative_ttl_s: float = 5.0
    key_cache_max_entries: int = 100_000
    catalog_ttl_s: float = 5.0
    # A name in the caller's namespace missing from its cached adapters is re-read at most this often, so a freshly
    # validated adapter is callable at once without letting unknown names query Postgres per request.
    adapter_miss_refresh_s: float = 1.0
    registry_refresh_s: float = 0.5
    # Bounded-load affinity: an adapter's holder is preferred while its load <= factor * (mean load + 1).
    affinity_load_factor: float = 1.25

    upstream_connect_timeout_s: float = 2.0
    upstream_read_timeout_s: float = 600.0
    upstream_max_connections: int = 2048
    max_upstream_attempts: int = 3

    spool_dir: Path = _HOME / "gateway-spool"
    spool_replay_interval_s: float = 1.0
    redis_socket_timeout_s: float = 1.0
    db_pool_min: int = 1
    db_pool_max: int = 10

    # Browser origins allowed to call /v1 directly (the dashboard's playground, with a short-lived Bearer key; no
    # cookies). Comma-separated; HEARTH_CORS_ORIGINS or HEARTH_GATEWAY_CORS_ORIGINS.
    cors_origins: str = Field(
        default="http://127.0.0.1:8000,http://localhost:8000",
        validation_alias=AliasChoices("HEARTH_CORS_ORIGINS", "HEARTH_GATEWAY_CORS_ORIGINS"),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
