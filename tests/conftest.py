from collections.abc import Callable, Iterator, Sequence
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Role
from config import embedded, replicas
from tests.factories import make_lost_reason, make_pipeline, make_team, make_user
from tools.processes import AppProcess, Processes, app_environment

# With DATABASE_REPLICA_URLS set, the suite's own requests read the test database on `default` (config/replicas.py).
replicas.test_mirrors_read_on_primary = True


def pytest_sessionfinish(session, exitstatus):
    """Stop the embedded servers if this test session started them (a newcomer's `make test`)."""
    embedded.stop_started(embedded.started_here)


@pytest.fixture
def pipeline(db):
    return make_pipeline(name="New Business", is_default=True)


@pytest.fixture
def other_pipeline(db):
    return make_pipeline(name="Renewals")


@pytest.fixture
def lost_reason(db):
    return make_lost_reason("Price")


@pytest.fixture
def org(db):
    """Two teams with a manager and two reps each, an admin, and a manager of no team.

    Returned as a namespace: org.rep, org.teammate, org.manager, org.other_rep, org.other_manager, org.admin, ...
    """

    class Org:
        pass

    o = Org()
    o.manager = make_user(role=Role.MANAGER, username="manager")
    o.other_manager = make_user(role=Role.MANAGER, username="other_manager")
    o.idle_manager = make_user(role=Role.MANAGER, username="idle_manager")
    o.team = make_team(name="East", managers=(o.manager,))
    o.other_team = make_team(name="West", managers=(o.other_manager,))
    o.manager.team = o.team
    o.manager.save()
    o.rep = make_user(team=o.team, username="rep")
    o.teammate = make_user(team=o.team, username="teammate")
    o.other_rep = make_user(team=o.other_team, username="other_rep")
    o.admin = make_user(role=Role.ADMIN, username="admin")
    return o


# --- Real processes ------------------------------------------------------------------------------------------------


def committed_database_url() -> str:
    """The URL of the database this test session uses (the test database), for the processes it starts."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgresql://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def app_env(*, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of an app process (web, worker, beat) on the given servers, with the test settings."""
    return app_environment(
        settings_module="config.settings.test",
        database_url=database_url,
        redis_url=redis_url,
        # config.settings.test takes the Redis database from here.
        TEST_REDIS_DB=redis_url.rsplit("/", 1)[1],
        **extra,
    )


@pytest.fixture
def start_celery_worker(django_db_setup, tmp_path) -> Iterator[Callable[..., AppProcess]]:
    """`start_celery_worker(queues=(), **environment)` starts a real `celery worker --pool solo` on the test database
    and the tests' Redis database, as the web tier's tasks would meet it in production (no eager mode anywhere), with
    `environment` on top of the test settings; its log is in tmp_path. It consumes `queues`, or every queue (the
    recompute, the refresh, webhooks, imports, the default) without them. Tasks left in the tests' queues by an
    earlier test or an interrupted run are purged first; every worker started is stopped when the test ends."""
    from config.celery import app

    app.control.purge()  # every queue of CELERY_TASK_QUEUES
    with Processes(tmp_path) as workers:

        def start(*, queues: Sequence[str] = (), **environment: str) -> AppProcess:
            env = app_env(database_url=committed_database_url(), redis_url=settings.REDIS_URL, **environment)
            return workers.worker(env, pool="solo", queues=queues, name=f"worker-{len(workers.started)}")

        yield start
