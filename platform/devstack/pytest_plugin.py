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
        _drop_stale_test_databases(os.environ["DATABASE_URL"])
    if "REDIS_URL" not in os.environ:
        rd = EmbeddedRedis(home / "redis")
        os.environ["REDIS_URL"] = rd.start()
        _started.append(rd)


def _drop_stale_test_databases(url: str) -> None:
    """Test databases of runs that were killed before pytest-django could drop them (their pid is gone)."""
    import psutil
    import psycopg
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        rows = conn.execute(r"SELECT datname FROM pg_database WHERE datname ~ '^test_hearth_[0-9]+$'").fetchall()
        for (name,) in rows:
            if not psutil.pid_exists(int(name.rsplit("_", 1)[1])):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_unconfigure(config) -> None:
    while _started:
        _started.pop().stop()
