"""API-key format, hash and scopes: what the control plane mints and stores (keys_apikey.hashed_key, .scopes), what the
gateway checks, and what the revocation channel carries."""

import hashlib
import re

API_KEY_PREFIX = "hk_"
API_KEY_BODY_LENGTH = 40  # base62
API_KEY_RE = re.compile(rf"{API_KEY_PREFIX}[0-9A-Za-z]{{{API_KEY_BODY_LENGTH}}}")  # use with fullmatch


# keys_apikey.scopes: `inference` calls /v1/* on the gateway (the default); `management` calls the control-plane API.
SCOPE_INFERENCE = "inference"
SCOPE_MANAGEMENT = "management"
API_KEY_SCOPES = (SCOPE_INFERENCE, SCOPE_MANAGEMENT)


def api_key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
