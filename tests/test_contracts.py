"""The names that cross process boundaries: their wire values are pinned here (changing one is a protocol change
between running processes), and no Hearth source outside contracts/ spells a `hearth:` Redis name itself."""

import hashlib
import re
from pathlib import Path

import pytest

import contracts
from contracts import redis_keys

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("platform", "billing", "gateway", "workers", "kernels", "hearth_cli", "bench")
# `hearth:` followed by a name or a placeholder: a Redis key or channel, not prose like "hearth: can't reach".
_REDIS_NAME = re.compile(r"hearth:[A-Za-z{*]")


def test_redis_names_on_the_wire():
    assert contracts.KEYS_REVOKED_CHANNEL == "hearth:keys:revoked"
    assert contracts.ADAPTERS_DELETED_CHANNEL == "hearth:adapters:deleted"
    assert contracts.WORKERS_SET == "hearth:workers"
    assert contracts.worker_key("w-1") == "hearth:worker:w-1"
    assert contracts.USAGE_STREAM == "hearth:usage"
    assert contracts.USAGE_DEAD_STREAM == "hearth:usage:dead"
    assert contracts.USAGE_EVENT_FIELD == "event"
    assert contracts.KEYS_LAST_USED_HASH == "hearth:keys:last_used"
    assert contracts.spend_key(42, "202612") == "hearth:spend:42:202612"
    assert contracts.billing_state_key(42) == "hearth:billing:42"
    assert contracts.spend_key("*", "*") == "hearth:spend:*:*"
    assert contracts.THROTTLE_KEY_PREFIX == "hearth:throttle:"
    # One Redis Cluster hash tag per account, so the token-bucket script touches one slot.
    assert contracts.rate_limit_keys(7, 3) == [
        "hearth:rl:{a7}:k3:rpm", "hearth:rl:{a7}:k3:tpm", "hearth:rl:{a7}:rpm", "hearth:rl:{a7}:tpm",
    ]
    assert all(k.startswith(contracts.RATE_LIMIT_PREFIX) for k in contracts.rate_limit_keys(1, 1))


def test_every_redis_name_is_exported():
    module_names = {n for n in vars(redis_keys) if not n.startswith("_") and n != "annotations"}
    assert module_names <= set(contracts.__all__)


def test_api_key_format_and_hash():
    secret = "hk_" + "a1B2" * 10
    assert contracts.API_KEY_RE.fullmatch(secret)
    assert not contracts.API_KEY_RE.fullmatch(secret + "\n") and not contracts.API_KEY_RE.fullmatch(secret[:-1])
    assert contracts.api_key_hash(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert len(contracts.api_key_hash(secret)) == 64


@pytest.mark.parametrize(("base", "uid", "name"), [
    ("smollm2-135m-instruct", None, "smollm2-135m-instruct"),
    ("smollm2-135m-instruct", "ad_3f9c", "smollm2-135m-instruct:ad_3f9c"),
])
def test_worker_model_name_round_trips(base, uid, name):
    assert contracts.worker_model_name(base, uid) == name
    assert contracts.parse_worker_model_name(name) == (base, uid)


@pytest.mark.parametrize("bad", ["", ":ad_1", "smollm2:"])
def test_worker_model_name_parser_refuses_empty_parts(bad):
    with pytest.raises(ValueError):
        contracts.parse_worker_model_name(bad)


def test_internal_headers():
    assert contracts.WORKER_SECRET_HEADER == "x-hearth-worker-secret"
    assert contracts.ACCOUNT_ID_HEADER == "x-hearth-account-id"


def test_contracts_import_neither_django_nor_torch():
    import subprocess
    import sys

    code = ("import sys, contracts, contracts.pubsub; "
            "bad = [m for m in ('django', 'torch', 'fastapi') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_redis_name_spelled_outside_contracts():
    offenders = []
    for top in SOURCE_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in {".py", ".lua"} or "node_modules" in path.parts:
                continue
            for lineno, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
                if _REDIS_NAME.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "Redis names belong in contracts/redis_keys.py:\n" + "\n".join(offenders)


def test_the_guard_sees_a_spelling():
    assert _REDIS_NAME.search('client.sadd("hearth:workers", wid)')
    assert _REDIS_NAME.search('tag = f"hearth:rl:{{a{account_id}}}"')
    assert not _REDIS_NAME.search('print(f"hearth: {exc}")')
