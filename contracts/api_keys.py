"""API-key format and hash: what the control plane mints and stores (keys_apikey.hashed_key), what the gateway checks,
and what the revocation channel carries."""

import hashlib
import re

API_KEY_PREFIX = "hk_"
API_KEY_BODY_LENGTH = 40  # base62
API_KEY_RE = re.compile(rf"{API_KEY_PREFIX}[0-9A-Za-z]{{{API_KEY_BODY_LENGTH}}}")  # use with fullmatch


def api_key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
