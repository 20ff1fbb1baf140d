import os

import psycopg
import redis


def test_embedded_postgres_is_real_postgres():
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    assert int(version.split(".")[0]) >= 15


def test_embedded_redis_answers():
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.set("hearth:test:ping", "1", ex=5)
    assert client.get("hearth:test:ping") == b"1"
    client.close()


def test_django_uses_postgres(db):
    from django.db import connection

    assert connection.vendor == "postgresql"
