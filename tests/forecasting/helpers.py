"""Shared helpers of the forecasting tests: building histories at given times and reading the latest run."""

from datetime import UTC, datetime
from decimal import Decimal

from forecasting.models import MetricSnapshot, MetricsRun, RunStatus
from pipeline import services
from pipeline.models import Deal
from tests.factories import make_qualified_deal, stage


def at(text: str) -> datetime:
    """'2026-10-01 12:00' as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def deal_with_history(*, owner, pipeline, path: list[tuple[str, str]], lost_reason=None, **fields) -> Deal:
    """A deal created in the first (stage name, time) of `path` and moved through the others at their times."""
    (first_stage, created), *moves = path
    deal = make_qualified_deal(
        owner=owner,
        pipeline=pipeline,
        stage=stage(pipeline, first_stage),
        created_at=at(created),
        lost_reason=lost_reason if first_stage == "Lost" else None,
        **fields,
    )
    for stage_name, moved in moves:
        deal = services.move_deal(
            deal=deal,
            stage=stage(pipeline, stage_name),
            actor=owner,
            at=at(moved),
            lost_reason=lost_reason if stage_name == "Lost" else None,
        )
    return deal


def latest_rows(metric: str, **filters) -> list[MetricSnapshot]:
    run = MetricsRun.objects.filter(status=RunStatus.COMPLETE).order_by("-computed_at", "-id").first()
    return list(MetricSnapshot.objects.filter(run=run, metric=metric, **filters))


def one(metric: str, **filters) -> dict:
    rows = latest_rows(metric, **filters)
    assert len(rows) == 1, f"expected one {metric} row for {filters}, found {len(rows)}"
    return rows[0].values


def money(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
