"""Plain factory functions for tests. Deals, leads and activities are made through the services, as in the app."""

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Role, Team, User
from pipeline import services
from pipeline.models import Deal, LostReason, Pipeline, Stage
from pipeline.stage_history import BULK_LOAD_SETTING

_sequence = itertools.count(1)

# (name, kind, probability, required fields, forecast category)
CLASSIC_STAGES = [
    ("Prospecting", "open", 10, [], "pipeline"),
    ("Qualification", "open", 20, [], "pipeline"),
    ("Discovery", "open", 40, ["amount"], "pipeline"),
    ("Proposal", "open", 60, ["amount", "expected_close_date", "contact"], "best_case"),
    ("Negotiation", "open", 80, ["amount", "expected_close_date", "contact"], "commit"),
    ("Won", "won", 100, [], "commit"),
    ("Lost", "lost", 0, [], "pipeline"),
]


def make_team(*, name: str | None = None, managers: tuple[User, ...] = ()) -> Team:
    team = Team.objects.create(name=name or f"Team {next(_sequence)}")
    team.managers.set(managers)
    return team


def make_user(*, role: str = Role.REP, team: Team | None = None, username: str | None = None, **fields: Any) -> User:
    username = username or f"{role}{next(_sequence)}"
    return User.objects.create_user(username=username, password="secret-pass-1", role=role, team=team, **fields)


@transaction.atomic  # the one-won-one-lost trigger is checked at commit: stages must come in the same transaction
def make_pipeline(*, name: str | None = None, is_default: bool = False, stages=CLASSIC_STAGES) -> Pipeline:
    pipeline = Pipeline.objects.create(name=name or f"Pipeline {next(_sequence)}", is_default=is_default)
    Stage.objects.bulk_create(
        Stage(
            pipeline=pipeline,
            name=stage_name,
            order=order,
            kind=kind,
            probability=probability,
            required_fields=required,
            forecast_category=category,
        )
        for order, (stage_name, kind, probability, required, category) in enumerate(stages, start=1)
    )
    return pipeline


def stage(pipeline: Pipeline, name: str) -> Stage:
    return pipeline.stages.get(name=name)


def make_lost_reason(name: str | None = None, *, is_active: bool = True) -> LostReason:
    return LostReason.objects.create(name=name or f"Reason {next(_sequence)}", is_active=is_active)


def make_deal(*, owner: User, pipeline: Pipeline, **fields: Any) -> Deal:
    fields.setdefault("title", f"Deal {next(_sequence)}")
    return services.create_deal(actor=owner, owner=owner, pipeline=pipeline, **fields)


def make_qualified_deal(*, owner: User, pipeline: Pipeline, **fields: Any) -> Deal:
    """A deal with every field the classic stages require, so that it may enter any of them."""
    contact = services.create_contact(actor=owner, last_name=f"Buyer {next(_sequence)}")
    fields.setdefault("amount", Decimal("12000.00"))
    fields.setdefault("expected_close_date", "2026-12-31")
    fields.setdefault("contact", contact)
    return make_deal(owner=owner, pipeline=pipeline, **fields)


def leave_untouched(deal: Deal, *, days: float | None = None, since: datetime | None = None) -> Deal:
    """Date the deal's last touch `days` ago (or at `since`), as if nothing had happened to it since (the triggers
    of pipeline.touches never move the stamp back, so this writes it as a bulk load would)."""
    at = since if since is not None else timezone.now() - timedelta(days=days or 0)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, 'on', true)", [BULK_LOAD_SETTING])
        cursor.execute("UPDATE pipeline_deal SET last_touched_at = %s WHERE id = %s", [at, deal.pk])
        cursor.execute("SELECT set_config(%s, 'off', true)", [BULK_LOAD_SETTING])
    deal.last_touched_at = at
    return deal
