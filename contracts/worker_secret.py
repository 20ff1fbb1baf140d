"""The rule both ends of the gateway -> worker link apply to HEARTH_WORKER_SECRET outside development.

Values copied from infra/env.example or docs instead of generated are refused, as is a short or missing secret:
without it any process that reaches a worker's port can use it.
"""

PLACEHOLDER_SECRETS = frozenset({
    "change-me", "changeme", "change-me-to-another-long-random-string", "change-me-to-a-long-random-string",
    "secret", "password", "worker-secret", "dev", "development", "test", "xxx", "...",
})  # fmt: skip
MIN_SECRET_LENGTH = 16
GENERATE_HINT = "generate one, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def worker_secret_problem(env: str, secret: str | None) -> str | None:
    """Why `secret` can't be used when HEARTH_ENV is `env`; None when it can (always in development)."""
    if env == "development":
        return None
    value = (secret or "").strip()
    if not value:
        return f"HEARTH_WORKER_SECRET must be set when HEARTH_ENV is {env!r} (not development)"
    if value.lower() in PLACEHOLDER_SECRETS or value.lower().startswith("change-me"):
        return f"HEARTH_WORKER_SECRET is a placeholder; {GENERATE_HINT}"
    if len(value) < MIN_SECRET_LENGTH:
        return f"HEARTH_WORKER_SECRET is shorter than {MIN_SECRET_LENGTH} characters; {GENERATE_HINT}"
    return None
