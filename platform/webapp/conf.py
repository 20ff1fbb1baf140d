"""Where the built dashboard lives and where the gateway answers. Settings first, then the environment."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest


def dist_dir() -> Path:
    default = Path(settings.REPO_ROOT) / "frontend" / "dist"
    return Path(getattr(settings, "HEARTH_FRONTEND_DIST", os.environ.get("HEARTH_FRONTEND_DIST", default)))


def gateway_url(request: HttpRequest) -> str:
    """The OpenAI base URL customers call. In development the gateway runs on :8080 of the host that served us."""
    configured = getattr(settings, "HEARTH_GATEWAY_URL", os.environ.get("HEARTH_GATEWAY_URL", ""))
    if configured:
        return configured.rstrip("/")
    host = request.get_host().rsplit(":", 1)[0] if not request.get_host().endswith("]") else request.get_host()
    return f"{request.scheme}://{host}:8080/v1"


def playground_key_ttl() -> timedelta:
    return timedelta(seconds=int(os.environ.get("HEARTH_PLAYGROUND_KEY_TTL_S", 15 * 60)))
