"""Names that cross a process boundary, defined once (DESIGN.md, "Names shared across processes"). Django-free and
torch-free: the control plane, billing, the gateway, the workers and the CLI all import it.

  redis_keys    every Redis key, key prefix and channel, with builders for the parameterised ones
  api_keys      the API-key hash stored in keys_apikey.hashed_key and sent on the revocation channel
  worker_names  the `base:adapter_uid` model name the gateway sends a worker, its builder and parser
  http_headers  internal headers between gateway and workers
  rate_limits   the default RPM/TPM limits (gateway enforces, control plane shows)
  pubsub        the one reconnecting pub/sub listener (gateway and workers)
"""

from contracts.api_keys import (
    API_KEY_BODY_LENGTH,
    API_KEY_PREFIX,
    API_KEY_RE,
    API_KEY_SCOPES,
    SCOPE_INFERENCE,
    SCOPE_MANAGEMENT,
    api_key_hash,
)
from contracts.http_headers import ACCOUNT_ID_HEADER, WORKER_SECRET_HEADER
from contracts.rate_limits import DEFAULT_RPM_LIMIT, DEFAULT_TPM_LIMIT
from contracts.redis_keys import (
    ADAPTERS_DELETED_CHANNEL,
    BILLING_STATE_KEY_PREFIX,
    KEYS_LAST_USED_HASH,
    KEYS_REVOKED_CHANNEL,
    RATE_LIMIT_PREFIX,
    ROUTES_CHANGED_CHANNEL,
    SPEND_KEY_PREFIX,
    THROTTLE_KEY_PREFIX,
    USAGE_DEAD_STREAM,
    USAGE_EVENT_FIELD,
    USAGE_STREAM,
    WORKER_KEY_PREFIX,
    WORKERS_SET,
    billing_state_key,
    rate_limit_keys,
    spend_key,
    worker_key,
)
from contracts.worker_names import ADAPTER_SEPARATOR, parse_worker_model_name, worker_model_name

__all__ = [
    "ACCOUNT_ID_HEADER",
    "ADAPTERS_DELETED_CHANNEL",
    "ADAPTER_SEPARATOR",
    "API_KEY_BODY_LENGTH",
    "API_KEY_PREFIX",
    "API_KEY_RE",
    "API_KEY_SCOPES",
    "BILLING_STATE_KEY_PREFIX",
    "DEFAULT_RPM_LIMIT",
    "DEFAULT_TPM_LIMIT",
    "KEYS_LAST_USED_HASH",
    "KEYS_REVOKED_CHANNEL",
    "RATE_LIMIT_PREFIX",
    "ROUTES_CHANGED_CHANNEL",
    "SCOPE_INFERENCE",
    "SCOPE_MANAGEMENT",
    "SPEND_KEY_PREFIX",
    "THROTTLE_KEY_PREFIX",
    "USAGE_DEAD_STREAM",
    "USAGE_EVENT_FIELD",
    "USAGE_STREAM",
    "WORKERS_SET",
    "WORKER_KEY_PREFIX",
    "WORKER_SECRET_HEADER",
    "api_key_hash",
    "billing_state_key",
    "parse_worker_model_name",
    "rate_limit_keys",
    "spend_key",
    "worker_key",
    "worker_model_name",
]
