"""`tools.generators.datasets`: datasets valid under the schema, shaped like a sales team's, reproducible."""

from datetime import UTC, datetime
from importlib import import_module
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count

from forecasting.models import MetricSnapshot, MetricsRun, PendingChange, Quota, RunStatus
from forecasting.services import recompute_metrics
from pipeline import search_text
from pipeline.models import Activity, Deal, Lead, LeadStatus, Pipeline, StageChange
from tools.generators.datasets import DatasetError, load_dataset

SEARCH_STATISTICS = import_module("pipeline.migrations.0030_search_statistics").SEARCH_STATISTICS

NOW = datetime(2026, 1, 15, tzinfo=UTC)
DEALS = 2000


def scalar(sql: str, params=()) -> object:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def table_digest(table: str) -> str:
    return scalar(f"SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {table} t")


LOADED_TABLES = [
    "accounts_team",
    "accounts_user",
    "pipeline_pipeline",
    "pipeline_stage",
    "pipeline_organization",
    "pipeline_contact",
    "pipeline_deal",
    "pipeline_stagechange",
    "pipeline_activity",
    "pipeline_lead",
    "forecasting_quota",
]


@pytest.fixture
def loaded(db):
    summary = load_dataset(deals=DEALS, seed=7, now=NOW)
    # Deferred constraints would otherwise wait for a commit the test never makes.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return summary


def test_load_writes_the_counts_it_reports(loaded):
    assert loaded.counts["deals"] == Deal.objects.count() == DEALS
    assert loaded.counts["stage changes"] == StageChange.objects.count()
    assert loaded.counts["activities"] == Activity.objects.count()
    assert loaded.counts["leads"] == Lead.objects.count() == round(DEALS * 0.3)
    assert loaded.counts["users"] == 200 and loaded.counts["teams"] == 20 and Pipeline.objects.count() == 3
    assert loaded.counts["quotas"] == Quota.objects.count() > 0


def test_foreign_keys_and_indexes_are_back_after_the_load(loaded):
    def foreign_keys_and_indexes() -> int:
        return scalar(
            """
            SELECT (SELECT count(*) FROM pg_constraint
                     WHERE contype = 'f' AND conrelid = 'pipeline_stagechange'::regclass)
                 + (SELECT count(*) FROM pg_index WHERE indrelid = 'pipeline_deal'::regclass)
            """
        )

    loaded_count = foreign_keys_and_indexes()
    # The migrated schema of pipeline_deal and pipeline_stagechange, as Django declares it.
    deal_indexes = len(Deal._meta.indexes) + 1 + sum(1 for f in Deal._meta.concrete_fields if f.is_relation or f.unique)
    change_foreign_keys = sum(1 for f in StageChange._meta.concrete_fields if f.is_relation)
    assert loaded_count == deal_indexes + change_foreign_keys
    assert scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'deal_stage_pipeline_status_match_stage'") == 1


def test_the_search_keeps_its_statistics_target_after_the_load(loaded):
    # pipeline 0030: the load drops and recreates the index, and CREATE INDEX starts from the default target.
    target = "SELECT attstattarget FROM pg_attribute WHERE attrelid = 'deal_search_trgm_idx'::regclass AND attnum = 1"
    assert scalar(target) == SEARCH_STATISTICS


def test_every_history_agrees_with_its_deal(loaded):
    """First change from nowhere at creation, each change from the previous stage, in time order, the last one at
    the deal's current stage and stage_entered_at, one per version, all in the deal's pipeline."""
    disagreeing = scalar(
        """
        WITH ordered AS (
            SELECT c.*, row_number() OVER w AS position, count(*) OVER (PARTITION BY c.deal_id) AS total,
                   lag(c.to_stage_id) OVER w AS previous_stage, lag(c.changed_at) OVER w AS previous_at
              FROM pipeline_stagechange c
            WINDOW w AS (PARTITION BY c.deal_id ORDER BY c.changed_at, c.id)
        )
        SELECT count(*)
          FROM ordered o
          JOIN pipeline_deal d ON d.id = o.deal_id
          JOIN pipeline_stage s ON s.id = o.to_stage_id
         WHERE s.pipeline_id <> d.pipeline_id
            OR o.total <> d.version
            OR (o.position = 1 AND (o.from_stage_id IS NOT NULL OR o.changed_at <> d.created_at))
            OR (o.position > 1 AND (o.from_stage_id IS DISTINCT FROM o.previous_stage OR o.changed_at <= o.previous_at))
            OR (o.position = o.total AND (o.to_stage_id <> d.stage_id OR o.changed_at <> d.stage_entered_at))
        """
    )
    assert disagreeing == 0
    assert (
        scalar("SELECT count(*) FROM pipeline_deal WHERE updated_at < stage_entered_at OR closed_at > %s", [NOW]) == 0
    )


def test_the_stage_history_stamps_are_what_the_database_would_have_stamped(loaded):
    from tests.pipeline.test_stage_history import derived_stamps, stamped

    assert stamped() == derived_stamps()
    assert not PendingChange.objects.exists()  # a bulk load, not a million changes for the metrics to refresh


def test_the_search_text_is_what_the_database_would_have_written(loaded):
    # The generator writes it with the rows (the load drops the indexes the trigger's lookups would use).
    from tests.pipeline.test_search_text import _expected

    deals = list(Deal.objects.all())
    assert all(deal.search_text == _expected(deal) for deal in deals[:: max(1, len(deals) // 200)])
    with connection.cursor() as cursor:
        assert search_text.restamp_search_text(cursor) == 0
    assert any("\n" in deal.search_text for deal in deals)


def test_deals_carry_what_their_stages_require(loaded):
    missing = scalar(
        """
        SELECT count(*)
          FROM pipeline_deal d
          JOIN pipeline_stagechange c ON c.deal_id = d.id
          JOIN pipeline_stage s ON s.id = c.to_stage_id
         WHERE ('amount' = ANY(s.required_fields) AND d.amount IS NULL)
            OR ('contact' = ANY(s.required_fields) AND d.contact_id IS NULL)
            OR ('expected_close_date' = ANY(s.required_fields) AND d.expected_close_date IS NULL)
        """
    )
    assert missing == 0
    assert (
        scalar(
            "SELECT count(*) FROM pipeline_deal WHERE contact_id IS NOT NULL AND NOT EXISTS ("
            " SELECT 1 FROM pipeline_contact c WHERE c.id = contact_id AND c.organization_id = organization_id)"
        )
        == 0
    )


def test_leads_reach_statuses_in_order_and_converted_ones_have_their_deal(loaded):
    assert set(Lead.objects.values_list("status", flat=True).distinct()) == set(LeadStatus.values)
    out_of_order = scalar(
        """
        SELECT count(*) FROM pipeline_lead
         WHERE contacted_at < created_at OR mql_at < contacted_at OR sql_at < mql_at OR converted_at < sql_at
            OR disqualified_at < created_at OR greatest(contacted_at, mql_at, sql_at, converted_at) > %s
            OR (status IN ('contacted', 'mql', 'sql', 'converted') AND contacted_at IS NULL)
            OR (status IN ('mql', 'sql', 'converted') AND mql_at IS NULL)
            OR (status IN ('sql', 'converted') AND sql_at IS NULL)
        """,
        [NOW],
    )
    assert out_of_order == 0
    converted = Lead.objects.filter(status=LeadStatus.CONVERTED).select_related("deal")
    assert converted.exists()
    assert all(lead.converted_at == lead.deal.created_at and lead.owner_id == lead.deal.owner_id for lead in converted)


def test_activities_are_planned_or_done_and_some_of_each(loaded):
    assert (
        Activity.objects.filter(done_at__isnull=False).count() > Activity.objects.filter(done_at__isnull=True).count()
    )
    assert Activity.objects.filter(done_at__isnull=True, due_at__gt=NOW).exists()  # planned ahead
    assert Activity.objects.filter(done_at__isnull=True, due_at__lt=NOW).exists()  # overdue
    assert Activity.objects.filter(lead__isnull=False).exists()
    assert 1.5 <= Activity.objects.count() / DEALS <= 2.5


def test_the_shape_is_a_sales_teams(loaded):
    won = Deal.objects.filter(status="won").count()
    lost = Deal.objects.filter(status="lost").count()
    assert lost > 2 * won > 0  # most closed deals are lost
    assert 3.3 <= StageChange.objects.count() / DEALS <= 4.7
    moves_back = scalar(
        """
        SELECT count(*) FROM pipeline_stagechange c
          JOIN pipeline_stage f ON f.id = c.from_stage_id JOIN pipeline_stage t ON t.id = c.to_stage_id
         WHERE t.kind = 'open' AND t."order" < f."order"
        """
    )
    assert moves_back > DEALS * 0.05
    # Lost early: more deals are lost from the first open stage than from the last.
    lost_from = dict(
        StageChange.objects.filter(to_stage__kind="lost", deal__pipeline__name="New Business")
        .values("from_stage__order")
        .annotate(n=Count("id"))
        .values_list("from_stage__order", "n")
    )
    assert lost_from[1] > 3 * lost_from[max(lost_from)]
    # One pipeline holds most open deals (the board row of SPEC §6 needs a big one).
    open_by_pipeline = sorted(
        Deal.objects.filter(status="open").values("pipeline").annotate(n=Count("id")).values_list("n", flat=True)
    )
    assert open_by_pipeline[-1] > sum(open_by_pipeline[:-1])
    # Reps with very different volumes.
    volumes = sorted(Deal.objects.values("owner").annotate(n=Count("id")).values_list("n", flat=True))
    assert volumes[-1] > 5 * volumes[len(volumes) // 2]
    # Long-tailed amounts: the mean well above the median.
    mean, median = scalar(
        "SELECT ARRAY[avg(amount), percentile_cont(0.5) WITHIN GROUP (ORDER BY amount)] FROM pipeline_deal"
    )
    assert mean > 1.5 * median
    # Five years of history, ending before now.
    first, last = scalar("SELECT ARRAY[min(created_at), max(created_at)] FROM pipeline_deal")
    assert (NOW - first).days > 4.5 * 365 and last < NOW


def test_same_seed_gives_the_same_rows_and_another_seed_others(db):
    load_dataset(deals=300, seed=3, now=NOW)
    first = {table: table_digest(table) for table in LOADED_TABLES}
    load_dataset(deals=300, seed=3, now=NOW, replace=True)
    assert {table: table_digest(table) for table in LOADED_TABLES} == first
    load_dataset(deals=300, seed=4, now=NOW, replace=True)
    assert table_digest("pipeline_deal") != first["pipeline_deal"]


def test_refuses_a_database_with_data_unless_replacing(db):
    load_dataset(deals=50, seed=1, now=NOW)
    with pytest.raises(DatasetError):
        load_dataset(deals=50, seed=1, now=NOW)
    load_dataset(deals=60, seed=1, now=NOW, replace=True)
    assert Deal.objects.count() == 60


def test_sequences_continue_after_the_loaded_ids(loaded):
    from tests.factories import make_lost_reason

    assert make_lost_reason("Reorganisation").pk > 1
    assert scalar("SELECT nextval(pg_get_serial_sequence('pipeline_deal', 'id'))") == DEALS + 1


def test_recompute_metrics_runs_on_a_dataset(loaded):
    run = recompute_metrics(as_of=NOW)
    assert run is not None and MetricsRun.objects.get(pk=run.pk).status == RunStatus.COMPLETE
    metrics = set(MetricSnapshot.objects.filter(run=run).values_list("metric", flat=True).distinct())
    assert {"deal_outcomes", "funnel", "forecast", "stage_time", "leads", "quota"} <= metrics
    # The company's win rate over all of 2025 agrees with the deals themselves.
    snapshot = MetricSnapshot.objects.get(
        run=run, metric="deal_outcomes", period_kind="year", period_start="2025-01-01", group_kind="company"
    )
    closed = Deal.objects.filter(closed_at__year=2025)
    assert snapshot.values["won"] == closed.filter(status="won").count()
    assert snapshot.values["lost"] == closed.filter(status="lost").count()


def test_generate_dataset_command(db):
    out = StringIO()
    call_command("generate_dataset", "--deals", "40", "--seed", "5", stdout=out)
    assert "40 deals" in out.getvalue() and Deal.objects.count() == 40
    with pytest.raises(CommandError, match="--replace"):
        call_command("generate_dataset", "--size", "S", stdout=StringIO())
    call_command("generate_dataset", "--size", "S", "--replace", stdout=StringIO())
    assert Deal.objects.count() == 1000


def test_dataset_users_log_in_with_the_demo_password_without_a_rehash(loaded):
    from django.contrib.auth.hashers import identify_hasher

    from accounts.models import User
    from tools.generators.vocabulary import DEMO_PASSWORD

    admin = User.objects.get(username="admin")
    assert admin.check_password(DEMO_PASSWORD)
    # A rehash at the first login would write to the user row in the middle of a benchmark.
    assert not identify_hasher(admin.password).must_update(admin.password)
    assert User.objects.filter(role="manager", team__isnull=False).count() == 20
