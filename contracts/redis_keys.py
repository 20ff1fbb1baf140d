"""Every Redis key and channel Hearth's processes share (DESIGN.md, "Names shared across processes").

| name | type | written by | read by |
|---|---|---|---|
| KEYS_REVOKED_CHANNEL | pub/sub, message: the key's hash | control plane | gateways |
| ADAPTERS_DELETED_CHANNEL | pub/sub, message: the adapter uid | control plane | gateways, workers |
| worker_key(id) + WORKERS_SET | JSON string EX 3 + set of ids | each worker | gateways |
| USAGE_STREAM (+ USAGE_DEAD_STREAM) | stream, field USAGE_EVENT_FIELD = JSON | gateway | billing ingest |
| rate_limit_keys(account, key) | token buckets (RATE_LIMIT_PREFIX) | gateway Lua | gateway |
| KEYS_LAST_USED_HASH | hash key id -> unix seconds | gateway | Celery beat |
| spend_key(account, YYYYMM), billing_state_key(account) | string / hash | billing | gateway billing guard |
| THROTTLE_KEY_PREFIX + ... | counters with EX | control plane | control plane (every process) |
| ROUTES_CHANGED_CHANNEL | pub/sub: account id | control plane (route CRUD) | gateways (re-read that account's routes) |
"""

KEYS_REVOKED_CHANNEL = "hearth:keys:revoked"
ADAPTERS_DELETED_CHANNEL = "hearth:adapters:deleted"
ROUTES_CHANGED_CHANNEL = "hearth:routes:changed"  # control plane -> gateways: an account's routes changed (its id)

WORKERS_SET = "hearth:workers"
WORKER_KEY_PREFIX = "hearth:worker:"

USAGE_STREAM = "hearth:usage"
USAGE_DEAD_STREAM = "hearth:usage:dead"
USAGE_EVENT_FIELD = "event"  # each stream entry: {USAGE_EVENT_FIELD: <usage event JSON>}

RATE_LIMIT_PREFIX = "hearth:rl:"
KEYS_LAST_USED_HASH = "hearth:keys:last_used"

SPEND_KEY_PREFIX = "hearth:spend:"
BILLING_STATE_KEY_PREFIX = "hearth:billing:"

THROTTLE_KEY_PREFIX = "hearth:throttle:"  # control-plane processes: log-in/sign-up windows per IP and e-mail


def worker_key(worker_id: str) -> str:
    return f"{WORKER_KEY_PREFIX}{worker_id}"


def rate_limit_keys(account_id: int, key_id: int) -> list[str]:
    """The four token buckets one request charges: key RPM, key TPM, account RPM, account TPM. `{a<id>}` is a Redis
    Cluster hash tag, so one script call touches a single slot."""
    tag = f"{RATE_LIMIT_PREFIX}{{a{account_id}}}"
    return [f"{tag}:k{key_id}:rpm", f"{tag}:k{key_id}:tpm", f"{tag}:rpm", f"{tag}:tpm"]


def spend_key(account_id: int | str, month: str) -> str:
    """The account's ledger cost in one UTC month (`month` is YYYYMM), integer micro-dollars. `"*"` builds a pattern."""
    return f"{SPEND_KEY_PREFIX}{account_id}:{month}"


def billing_state_key(account_id: int | str) -> str:
    """Hash {limit_micros, credit_micros, payment_status}. `"*"` builds a pattern."""
    return f"{BILLING_STATE_KEY_PREFIX}{account_id}"
