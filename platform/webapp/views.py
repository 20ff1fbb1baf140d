"""The single-page app: `index.html` of the built dashboard for `/` and every client-side route. Its assets are
static files (`/static/app/...`, served by whitenoise)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

from webapp import conf

_MISSING = """<!doctype html><meta charset="utf-8"><title>Hearth</title>
<p>The dashboard has not been built. Run <code>make frontend</code> (or <code>make up</code>) and reload.</p>
<p>The API is at <a href="/api/docs/">/api/docs/</a>.</p>"""


@require_safe
@ensure_csrf_cookie
def spa(request: HttpRequest, path: str = "") -> HttpResponse:
    index = conf.dist_dir() / "index.html"
    try:
        html = index.read_text(encoding="utf-8")
    except FileNotFoundError:
        return HttpResponse(_MISSING, status=503)
    response = HttpResponse(html)
    response["Cache-Control"] = "no-cache"  # the hashed assets are cached; the page that names them is not
    return response
