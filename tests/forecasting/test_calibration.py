"""The calibration of the stage probabilities (SPEC §3a, `forecasting.metrics.calibration`): every row recomputed in
plain Python from the same stage changes and deals, with the learned probability as of the start of each entry's day
from what was known then only."""

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from forecasting.models import Metric
from forecasting.periods import Period
from forecasting.services import recompute_history_metrics, recompute_metrics
from pipeline.models import Deal, Stage, StageChange
from tests.forecasting.helpers import latest_rows
from tests.forecasting.test_backtest import AS_OF, configured_at, history, learned_at  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


def expected_rows(tz: str, org) -> dict:
    """{(kind, period start, group kind, group, pipeline, stage or None): values} by SPEC §3a, in plain Python."""
    zone = ZoneInfo(tz)
    stages = {s.pk: s for s in Stage.objects.all()}
    teams = {user.pk: user.team_id for user in (org.rep, org.teammate, org.other_rep, org.manager, org.admin)}
    learned_cache: dict = {}
    predictions: dict = {}
    for deal in Deal.objects.filter(status__in=["won", "lost"], closed_at__lte=AS_OF):
        first_entries: dict = {}
        for change in StageChange.objects.filter(deal=deal).order_by("changed_at", "id"):
            if stages[change.to_stage_id].kind == "open":
                first_entries.setdefault(change.to_stage_id, change.changed_at)
        closed = deal.closed_at.astimezone(zone).date()
        windows = [
            ("quarter", Period.containing(closed, "quarter").start),
            ("year", Period.containing(closed, "year").start),
        ]
        windows.append(("all", None))
        for stage_id, entered in first_entries.items():
            day = datetime.combine(entered.astimezone(zone).date(), time.min, zone)
            if day not in learned_cache:
                learned_cache[day] = learned_at(day)
            p_configured = configured_at(stage_id, entered)
            prediction = (p_configured, learned_cache[day][stage_id], 1 if deal.status == "won" else 0)
            for group_kind, group in (
                ("company", None),
                ("owner", deal.owner_id),
                ("team", teams[deal.owner_id]),
                ("source", deal.source),
            ):
                for kind, start in windows:
                    for stage in (stage_id, None):
                        key = (kind, start, group_kind, group, deal.pipeline_id, stage)
                        predictions.setdefault(key, []).append(prediction)
    rows = {}
    for key, found in predictions.items():
        n = len(found)
        wins = sum(y for _, _, y in found)

        def bins(index: int, found=found) -> list[dict]:
            by_bin: dict = {}
            for prediction in found:
                p = prediction[index]
                by_bin.setdefault(min(int(p * 10), 9), []).append((p, prediction[2]))
            return [
                {
                    "bin": b,
                    "count": len(of_bin),
                    "mean_p": float(sum(p for p, _ in of_bin) / len(of_bin)),
                    "win_rate": sum(y for _, y in of_bin) / len(of_bin),
                }
                for b, of_bin in sorted(by_bin.items())
            ]

        rows[key] = {
            "predictions": n,
            "won": wins,
            "win_rate": wins / n,
            "mean_configured": float(sum(p for p, _, _ in found) / n),
            "mean_learned": float(sum(p for _, p, _ in found) / n),
            "brier_configured": float(sum((p - y) ** 2 for p, _, y in found) / n),
            "brier_learned": float(sum((p - y) ** 2 for _, p, y in found) / n),
            "bins_configured": bins(0),
            "bins_learned": bins(1),
        }
    return rows


def computed_rows() -> dict:
    column = {"company": None, "owner": "owner_id", "team": "team_id", "source": "source"}
    return {
        (
            row.period_kind,
            row.period_start,
            row.group_kind,
            getattr(row, column[row.group_kind]) if column[row.group_kind] else None,
            row.pipeline_id,
            row.stage_id,
        ): row.values
        for row in latest_rows(Metric.CALIBRATION)
    }


def same(computed, expected) -> bool:
    if isinstance(expected, float):
        return computed == pytest.approx(expected, rel=1e-9)
    if isinstance(expected, list):
        return len(computed) == len(expected) and all(same(c, e) for c, e in zip(computed, expected, strict=True))
    if isinstance(expected, dict):
        return set(computed) == set(expected) and all(same(computed[k], v) for k, v in expected.items())
    return computed == expected


@pytest.mark.parametrize(("tz", "lookback"), [("UTC", 365), ("America/New_York", 30), ("Asia/Tokyo", 0)])
def test_calibration_rows_are_the_brier_score_and_reliability_of_each_stage(history, org, settings, tz, lookback):  # noqa: F811
    settings.TIME_ZONE = tz
    settings.METRICS_LOOKBACK_DAYS = lookback
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)

    expected, computed = expected_rows(tz, org), computed_rows()
    assert set(computed) == set(expected)
    for key, values in expected.items():
        assert same(computed[key], values), (key, computed[key], values)
    # The learned probabilities moved away from the configured ones somewhere.
    assert any(v["mean_learned"] != v["mean_configured"] for v in computed.values())
