import pytest

from accounts.models import Role
from config import embedded
from tests.factories import make_lost_reason, make_pipeline, make_team, make_user


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
