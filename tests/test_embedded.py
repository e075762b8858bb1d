"""The embedded default of SPEC §5: real PostgreSQL and Valkey servers started from PyPI wheels."""

import psycopg
import pytest
import redis

from config import embedded


@pytest.mark.slow
def test_embedded_servers_start_answer_are_reused_and_stop(tmp_path):
    try:
        assert embedded.start_postgres(tmp_path) is True
        assert embedded.start_redis(tmp_path) is True
        # A second start finds them running and reuses them, on the same ports.
        assert embedded.start_postgres(tmp_path) is False
        assert embedded.start_redis(tmp_path) is False

        with psycopg.connect(embedded.database_url(tmp_path)) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("crm",)
        assert redis.Redis.from_url(embedded.redis_url(tmp_path)).ping() is True
    finally:
        embedded.stop_postgres(tmp_path)
        embedded.stop_redis(tmp_path)

    assert not embedded.postgres_running(tmp_path)
    assert not embedded.redis_running(tmp_path)
