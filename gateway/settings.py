"""Gateway settings from the environment (pydantic-settings), read once per process. Every knob the gateway reads is
here; no other gateway module reads os.environ."""

from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts import DEFAULT_RPM_LIMIT, DEFAULT_TPM_LIMIT
from contracts.worker_secret import worker_secret_problem

_HOME = Path(__file__).resolve().parents[1] / ".hearth"


class InsecureSettings(ValueError):
    """A setting that is tolerated in development and refused anywhere else."""


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
    # "development" (the default, as the control plane's): an empty worker secret is allowed. Anything else needs a
    # real one (see _require_worker_secret).
    env: str = Field(default="development", validation_alias=AliasChoices("HEARTH_ENV", "HEARTH_GATEWAY_ENV"))
    worker_secret: str = Field(
        default="", validation_alias=AliasChoices("HEARTH_WORKER_SECRET", "HEARTH_GATEWAY_WORKER_SECRET")
    )
    # Spend limit (USD) of an account whose billing state isn't in Redis yet; the control plane reads the same name.
    billing_default_spend_limit: Decimal = Field(
        default=Decimal("10"), ge=0,
        validation_alias=AliasChoices("HEARTH_BILLING_DEFAULT_SPEND_LIMIT",
                                      "HEARTH_GATEWAY_BILLING_DEFAULT_SPEND_LIMIT"),
    )
    billing_cache_ttl_s: float = 1.0
    price_cache_ttl_s: float = 5.0
    # Request bodies above this are refused with 413 before they are read whole (Content-Length, or while reading).
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)

    region: str = "local"  # this gateway's region: routing prefers workers of the same region

    # Rate limits: account defaults (accounts_account.rpm_limit / tpm_limit override them); per-key limits default
    # to the account's, and may only be set lower.
    default_rpm_limit: int = DEFAULT_RPM_LIMIT
    default_tpm_limit: int = DEFAULT_TPM_LIMIT
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
    db_pool_timeout_s: float = 5.0  # a query's wait for a connection; while Postgres is down, the wait per request
    # Postgres away: cached keys, catalog listings and prices are served this long past their TTL (README,
    # "While Redis or Postgres is down"); after that an uncached answer is a 503.
    stale_serve_s: float = 600.0

    # Browser origins allowed to call /v1 directly (the dashboard's playground, with a short-lived Bearer key; no
    # cookies). Comma-separated; HEARTH_CORS_ORIGINS or HEARTH_GATEWAY_CORS_ORIGINS.
    cors_origins: str = Field(
        default="http://127.0.0.1:8000,http://localhost:8000",
        validation_alias=AliasChoices("HEARTH_CORS_ORIGINS", "HEARTH_GATEWAY_CORS_ORIGINS"),
    )


    @model_validator(mode="after")
    def _require_worker_secret(self) -> "Settings":
        problem = worker_secret_problem(self.env, self.worker_secret)  # the worker applies the same rule
        if problem is not None:
            raise InsecureSettings(problem)
        return self

    @property
    def default_spend_limit_micros(self) -> int:
        return int(self.billing_default_spend_limit * 1_000_000)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
