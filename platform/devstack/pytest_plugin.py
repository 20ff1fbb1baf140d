"""Starts real (embedded) Postgres and Redis before Django is set up, unless DATABASE_URL / REDIS_URL are given.

Loaded with `-p devstack.pytest_plugin` (pyproject addopts). Runs before pytest-django configures Django, so the
settings module sees the URLs.
"""

import os

import pytest

from devstack.services import DEFAULT_HOME, EmbeddedPostgres, EmbeddedRedis

_started: list = []


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    home = DEFAULT_HOME / "test"
    # The embedded server is shared by concurrent test runs; each run gets its own test database.
    os.environ.setdefault("HEARTH_TEST_DATABASE_NAME", f"test_hearth_{os.getpid()}")
    if "DATABASE_URL" not in os.environ:
        pg = EmbeddedPostgres(home / "postgres")
        os.environ["DATABASE_URL"] = pg.start()
        _started.append(pg)
    if "REDIS_URL" not in os.environ:
        rd = EmbeddedRedis(home / "redis")
        os.environ["REDIS_URL"] = rd.start()
        _started.append(rd)


def pytest_unconfigure(config) -> None:
    while _started:
        _started.pop().stop()
