"""Schemathesis against the gateway's own OpenAPI schema (FastAPI's, from the app), issue 12 item 11: every
operation gets generated requests through a real gateway (uvicorn, real Postgres and Redis) with a real key, and a
stub worker serving the stub model. No answer may be a 5xx, and every error is OpenAI's error object:
{"error": {"message": str, "type": str, "param": str | null, "code": str | null}}.

Bounded for the 2-core box: HEARTH_FUZZ_EXAMPLES per operation (default 40), derandomized, no shrinking, and a wall
budget (HEARTH_GATEWAY_FUZZ_BUDGET_S, default 60 s) after which the rest is skipped and named in the output.
HEARTH_FUZZ_RANDOM=1 hunts with fresh seeds."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import schemathesis
from conftest import STUB_MODEL
from gateway_testlib import wait_for_workers
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
EXAMPLES_PER_OPERATION = int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "40"))
BUDGET_S = float(os.environ.get("HEARTH_GATEWAY_FUZZ_BUDGET_S", "60"))
DERANDOMIZE = os.environ.get("HEARTH_FUZZ_RANDOM") != "1"


class NotOpenAIShape(AssertionError):
    pass


@schemathesis.check
def openai_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        raise NotOpenAIShape(f"{response.status_code} without a JSON body: {response.text[:200]!r}") from None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        raise NotOpenAIShape(f"{response.status_code} is not OpenAI's error object: {body!r:.300}")
    if not (isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str)):
        raise NotOpenAIShape(f"{response.status_code}: message/type not strings: {body!r:.300}")
    if not all(error[k] is None or isinstance(error[k], str) for k in ("param", "code")):
        raise NotOpenAIShape(f"{response.status_code}: param/code neither string nor null: {body!r:.300}")
    return None


def _fuzz(operation: Any, base_url: str, headers: dict[str, str], tally: dict[str, set[int]], label: str
          ) -> str | None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=DERANDOMIZE,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def exercise(case: Any) -> None:
        if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
            case.body["model"] = STUB_MODEL  # past model_not_found: the bodies reach validation, limits, the worker
        response = case.call(base_url=base_url, headers=headers)
        tally.setdefault(label, set()).add(response.status_code)
        case.validate_response(response, checks=[not_a_server_error, openai_error_shape])

    try:
        exercise()
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
        return f"{type(exc).__name__}: {str(exc)[:1500]}"
    return None


def test_no_gateway_operation_answers_a_5xx_or_an_error_outside_openais_shape(gateway_factory, stub_worker,
                                                                               make_key):
    gateway = gateway_factory(default_rpm_limit=1_000_000, default_tpm_limit=10**12)  # limits aren't fuzzed here
    stub_worker("stub-0", "--chunks", "3")
    wait_for_workers(gateway, STUB_MODEL)
    _key, secret = make_key()
    schema = schemathesis.openapi.from_dict(gateway.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models"} <= labels, labels
    deadline = time.monotonic() + BUDGET_S
    failures: dict[str, str] = {}
    skipped: list[str] = []
    tally: dict[str, set[int]] = {}
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        if time.monotonic() > deadline:
            skipped.append(label)
            continue
        failure = _fuzz(operation, gateway.url, {"authorization": f"Bearer {secret}"}, tally, label)
        if failure is not None:
            failures[label] = failure
    for label, codes in sorted(tally.items()):
        print(f"fuzz {label}: {sorted(codes)}")
    if skipped:
        print(f"fuzz budget of {BUDGET_S:.0f} s spent; not reached: {', '.join(skipped)}")
    assert 200 in tally.get("GET /v1/models", set()), "the run never got past authentication"
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
