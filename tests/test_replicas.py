"""Read replicas (config/replicas.py) as configured; their behaviour against a real streaming replica is in
tests/faults/test_read_replicas.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, router

from accounts.models import Role
from config.replicas import PIN_COOKIE, ReplicaRouter, replica_aliases
from pipeline.models import Deal
from tests.factories import make_pipeline, make_user

ROOT = Path(__file__).resolve().parent.parent

SHOW = """
import json
import django
django.setup()
from django.conf import settings
from django.db import router
from pipeline.models import Deal
print(json.dumps({
    alias: {"host": db["HOST"], "port": db["PORT"], "mirror": db.get("TEST", {}).get("MIRROR"),
            "migrate": router.allow_migrate(alias, "pipeline", model_name="deal"),
            "write": router.db_for_write(Deal)}
    for alias, db in settings.DATABASES.items()
}))
"""


def test_each_replica_url_is_an_alias_that_migrations_skip():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_REPLICA_URLS": "postgresql://crm@replica-a:5432/crm, postgresql://crm@replica-b:6432/crm",
    }
    result = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    databases = json.loads(result.stdout.strip().splitlines()[-1])

    assert set(databases) == {"default", "replica_1", "replica_2"}
    assert (databases["replica_1"]["host"], databases["replica_2"]["port"]) == ("replica-a", 6432)
    # Under the test runner a replica is the test database itself; migrations and writes are the primary's only.
    assert databases["replica_1"]["mirror"] == databases["replica_2"]["mirror"] == "default"
    assert [db["migrate"] for db in databases.values()] == [True, False, False]
    assert {db["write"] for db in databases.values()} == {"default"}


def test_without_replicas_every_query_stays_on_the_primary(client, db):
    # None configured (the default), or the test mirrors of the suite's own session when DATABASE_REPLICA_URLS is set.
    assert replica_aliases() == []
    assert router.db_for_read(Deal) == router.db_for_write(Deal) == DEFAULT_DB_ALIAS
    assert ReplicaRouter().allow_migrate(DEFAULT_DB_ALIAS, "pipeline") is True

    make_pipeline(is_default=True)
    client.force_login(make_user(role=Role.ADMIN))
    response = client.post("/api/v1/deals/", {"title": "No replica to pin against"}, content_type="application/json")

    assert response.status_code == 201, response.content
    assert PIN_COOKIE not in response.cookies
