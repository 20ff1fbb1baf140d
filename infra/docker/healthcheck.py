"""Container healthcheck: `python healthcheck.py URL [HOST]` exits 0 when URL answers 2xx/3xx (stdlib only)."""

import sys
import urllib.error
import urllib.request

url = sys.argv[1]
headers = {"Host": sys.argv[2]} if len(sys.argv) > 2 else {}
try:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
        sys.exit(0 if response.status < 400 else 1)
except (urllib.error.URLError, OSError) as exc:
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
