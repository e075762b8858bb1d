"""Schema fuzzing (SPEC §7): every operation of /api/schema/, called in-process with generated input by an admin's
API token; no answer may be a 5xx or break the schema (status codes, content types, bodies)."""

import os
from datetime import date
from uuid import uuid4

import pytest
import schemathesis
from celery.result import AsyncResult
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, settings

from forecasting.models import Quota
from forecasting.services import recompute_metrics
from pipeline import services
from pipeline.webhooks import services as webhooks
from tests.api.conftest import client_for
from tests.factories import make_lost_reason, make_qualified_deal

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# Per operation; about 60 operations make a few hundred cases in all.
EXAMPLES_PER_OPERATION = 10


# Loaded at collection: serving the schema touches neither the database nor anything a test sets up.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
# The coverage phase (every boundary value of every parameter: some 3,000 cases, two minutes) runs on demand with
# SCHEMA_FUZZ_DEEP=1; `make test` runs the explicit examples and random fuzzing.
schema.config.phases.update(
    phases=["examples", "fuzzing", "coverage"] if os.environ.get("SCHEMA_FUZZ_DEEP") else ["examples", "fuzzing"]
)


# Checks whose premise the API does not share. A schema-valid body can name a record that does not exist (400), and
# DRF ignores a malformed `page_size` or an empty filter rather than refusing it; neither is a bug.
LENIENT_BY_DESIGN = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.negative_data_rejection]


@pytest.fixture(autouse=True)
def _keep_test_connection():
    # Like Django's test client: a request must not close the connection that holds the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_context(org, pipeline, monkeypatch):
    """Records for generated ids to land on (half of the cases use a real id), and the callers' tokens: mostly the
    admin, who may do anything, and every third case a rep who sees none of these records (404s and 403s).

    A recompute gives the metric reads rows to page through; a requested recompute is queued nowhere (the task id
    is generated as Celery would), so fuzzing leaves no task behind for a worker of another test."""
    monkeypatch.setattr(
        "forecasting.tasks.recompute_metrics_task.apply_async", lambda *args, **kwargs: AsyncResult(str(uuid4()))
    )
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    lead = services.create_lead(actor=org.rep, last_name="Fuzzed", company="Fuzzco")
    activity = services.log_activity(actor=org.rep, kind="task", subject="Fuzz", deal=deal, due_at="2030-01-01T00:00Z")
    make_lost_reason("Fuzz reason")
    authorizations = [client_for(user)._credentials["HTTP_AUTHORIZATION"] for user in (org.admin, org.teammate)]
    with override_settings(WEBHOOK_ALLOWED_HOSTS=["127.0.0.1"]):
        subscription = webhooks.create_subscription(owner=org.admin, url="http://127.0.0.1:9/fuzz", events=["deal.won"])
    webhooks.send_test_event(subscription=subscription)  # a delivery for the log (never sent: no commit here)
    ids = {
        "deals": deal.pk,
        "leads": lead.pk,
        "activities": activity.pk,
        "organizations": deal.organization_id or services.create_organization(actor=org.rep, name="Fuzz").pk,
        "contacts": deal.contact_id,
        "pipelines": pipeline.pk,
        "stages": pipeline.stages.first().pk,
        "users": org.rep.pk,
        "teams": org.team.pk,
        "tokens": org.admin.api_tokens.first().pk,
        "webhooks": subscription.pk,
        "quotas": Quota.objects.create(
            user=org.rep, amount=5000, period_start=date(2026, 10, 1), period_end=date(2027, 1, 1)
        ).pk,
    }
    recompute_metrics()
    return authorizations, ids


CASES: dict[str, int] = {}


def teardown_module():
    print(f"\nschema fuzzing: {sum(CASES.values())} cases over {len(CASES)} operations")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_conforms_to_the_schema(case, fuzz_context):
    (admin, rep), ids = fuzz_context
    seen = CASES.get(case.operation.label, 0)
    CASES[case.operation.label] = seen + 1
    resource = case.path.split("/")[3]
    if "id" in (case.path_parameters or {}) and resource in ids and seen % 2 == 0:
        case.path_parameters["id"] = ids[resource]
    # A sparse or expanded answer (`fields=`, `expand=`) is by design not the documented full shape.
    for parameter in ("fields", "expand"):
        (case.query or {}).pop(parameter, None)
    authorization = rep if seen % 3 == 2 else admin
    case.call_and_validate(headers={"Authorization": authorization}, excluded_checks=LENIENT_BY_DESIGN)
