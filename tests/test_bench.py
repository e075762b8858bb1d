"""The pieces of `make bench` that can be wrong without a benchmark noticing: the load driver's counting, the
plain-SQL lower bound agreeing with the app's metrics, and the table. (CI also runs `make bench-small` whole.)"""

import re
import threading
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from accounts.models import Team, User
from forecasting.models import MetricSnapshot
from forecasting.services import recompute_metrics
from pipeline.models import Deal, Organization
from tools.bench import driver
from tools.bench.harness import (
    GROWTH_ROWS,
    HISTORY_TABLES,
    ROWS,
    Bench,
    format_growth,
    format_table,
    history_storage,
    plain_sql_statements,
)
from tools.bench.servers import Servers
from tools.generators.datasets import load_dataset, size_deals

NOW = datetime(2026, 1, 15, tzinfo=UTC)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the driver expects

    def do_GET(self):
        status = 200 if self.path == "/ok" else 404
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_driver_sends_the_requests_asked_for_in_turn_and_counts_statuses(server):
    job = {"base_url": server, "paths": ["/ok", "/missing"], "headers": {"X-Test": "1"}, "concurrency": 3,
           "requests": 20, "seconds": 60}  # fmt: skip
    result = driver.run(job)
    assert len(result["latencies_ms"]) == 20
    assert result["statuses"] == {"200": 10, "404": 10}
    assert result["errors"] == []


def test_driver_stops_at_its_time_bound(server):
    result = driver.run({"base_url": server, "paths": ["/ok"], "concurrency": 2, "requests": 10**9, "seconds": 0.3})
    assert 0 < len(result["latencies_ms"]) < 10**9


def test_driver_refuses_anything_but_loopback():
    with pytest.raises(SystemExit):
        driver.run({"base_url": "http://192.0.2.1:80", "paths": ["/"], "concurrency": 1, "requests": 1, "seconds": 1})


def test_table_has_a_line_per_row_and_says_whether_each_target_is_met():
    rows = [
        {"what": "deal list", "measured": "p95 70 ms", "target": "p95 ≤ 60 ms", "met": False},
        {"what": "board", "measured": "p95 90 ms", "target": "p95 ≤ 200 ms", "met": True},
        {"what": "import", "measured": "harness error", "target": "", "met": None},
    ]
    lines = format_table(rows, "S").splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[2].endswith("| NO") and lines[3].endswith("| yes") and lines[4].endswith("| ?")


def bench() -> Bench:
    return Bench("S", Servers(database_url="postgresql://127.0.0.1/unused", redis_url="redis://127.0.0.1/0"), [])


def test_every_row_gets_the_sql_alone_its_ratio_and_the_load_average_at_its_start_and_end():
    measuring = bench()
    started_at = measuring._load_at_start
    measuring.add_row({"what": "one", "measured": "", "target": "", "met": True}, source="s", parts=[("", 30.0, 4.0)])
    measuring.add_row(
        {"what": "two", "measured": "", "target": "", "met": True},
        source="s",
        parts=[("page 1", 9.0, 3.0), ("deep", 5.0, None)],
    )
    measuring.add_row({"what": "three", "measured": "", "target": "", "met": None}, source="")
    one, two, three = measuring.rows
    # A row starts where the one before it ended.
    assert one["load_1m"]["start"] == started_at
    assert two["load_1m"]["start"] == one["load_1m"]["end"] and three["load_1m"]["start"] == two["load_1m"]["end"]
    assert all(row["load_1m"]["end"] >= 0 for row in measuring.rows)
    assert [part["ratio"] for part in one["sql"]["parts"] + two["sql"]["parts"]] == [7.5, 3.0, None]
    assert three["sql"]["parts"] == []

    header, _rule, *lines = format_table(measuring.rows, "S").splitlines()
    cells = [[cell.strip() for cell in line.split("|")] for line in [header, *lines]]
    assert cells[0][2:5] == ["SQL alone", "app/SQL", "load 1m"]
    assert cells[1][2:4] == ["4.0 ms", "×7.5"]
    assert cells[2][2:4] == ["page 1 3.0 ms, deep —", "×3.0, —"]
    assert cells[3][2:4] == ["—", "—"]
    end = one["load_1m"]["end"]
    assert cells[1][4] == f"{started_at:.2f} → {end:.2f}"


def test_growth_table_puts_each_dataset_in_a_column_with_the_ratio_of_l_to_s():
    def result(deals: int, p95: float | None, sql: float) -> dict:
        row = {"key": "deal_list", "what": "deal list", "measured": "p95 …", "details": {"p95_ms": p95}}
        row["sql"] = {"parts": [{"label": "", "sql_ms": sql, "ratio": 2.0}]}
        row["load_1m"] = {"start": deals / 1000, "end": deals / 100}
        return {"dataset": {"deals": deals}, "rows": [row]}

    results = {"S": result(1_000, 20.0, 2.0), "M": result(100_000, 25.0, 2.5), "L": result(1_000_000, 30.0, 3.0)}
    header, _rule, line, load = format_growth(results).splitlines()
    assert [cell.strip() for cell in header.split("|")][1:] == [
        "S: 1,000 deals",
        "M: 100,000 deals",
        "L: 1,000,000 deals",
        "p95 L/S",
    ]
    assert [cell.strip() for cell in line.split("|")] == [
        "GET deals/?pipeline=&stage=&page_size=50, concurrency 4, as admin",
        "20.0 ms; 2.0 ms",
        "25.0 ms; 2.5 ms",
        "30.0 ms; 3.0 ms",
        "×1.50",
    ]
    assert [cell.strip() for cell in load.split("|")][1:4] == ["1.00 → 10.00", "100.00 → 1000.00", "1000.00 → 10000.00"]
    assert size_deals("M") == 100_000


def test_the_users_searched_word_and_pipeline_of_the_rows_are_the_datasets_busiest(db):
    """The manager's team owns the most open deals of the board's pipeline, the rep is that team's busiest, the
    word is in the most organization names: recomputed here from the rows."""
    load_dataset(deals=400, seed=11, now=NOW)
    measuring = bench()
    measuring._setup_users()

    deals = list(Deal.objects.values("owner_id", "pipeline_id", "status"))
    open_in_pipeline = Counter(deal["pipeline_id"] for deal in deals if deal["status"] == "open")
    assert open_in_pipeline[measuring.pipeline.pk] == max(open_in_pipeline.values())
    teams_of = {user.pk: user.team_id for user in User.objects.all()}
    managed = {team.pk: {manager.pk for manager in team.managers.all()} for team in Team.objects.all()}
    by_manager = Counter()
    for deal in deals:
        if deal["pipeline_id"] == measuring.pipeline.pk and deal["status"] == "open":
            for manager_id in managed.get(teams_of[deal["owner_id"]], ()):
                by_manager[manager_id] += 1
    assert by_manager[measuring.manager.pk] == max(by_manager.values())
    reps = {
        user.pk for user in User.objects.filter(role="rep") if measuring.manager.pk in managed.get(user.team_id, set())
    }
    by_rep = Counter({rep: 0 for rep in reps}) + Counter(deal["owner_id"] for deal in deals if deal["owner_id"] in reps)
    assert measuring.rep.pk in reps and by_rep[measuring.rep.pk] == max(by_rep.values())
    assert measuring.result["board_pipeline"]["rep_deals"] == by_rep[measuring.rep.pk]

    words = Counter()
    for name in Organization.objects.values_list("name", flat=True):
        words.update({word for word in re.split("[^a-z]+", name.lower()) if len(word) >= 4})
    most = max(words.values())
    assert (measuring.search_word, measuring.result["search"]["organizations"]) == (
        min(word for word, count in words.items() if count == most),
        most,
    )


def test_profile_times_the_statements_of_each_request_in_process(db):
    load_dataset(deals=200, seed=11, now=NOW)
    measuring = bench()
    measuring._setup_users()
    headers = measuring.auth_for(measuring.rep)
    assert measuring.auth_for(measuring.rep) == headers  # one token per user and run
    profile = measuring.profile(f"/api/v1/deals/?search={measuring.search_word}&page_size=5", headers=headers, repeat=3)
    assert profile["status"] == 200 and profile["requests"] == 3
    # The same statements each time (the search is on the page, the count with it), and no more SQL than wall time.
    assert len(profile["queries_each"]) == 1 and profile["queries"] >= 2
    assert 0 < profile["sql_ms"] <= profile["in_process_ms"]
    assert abs(profile["python_ms"] - (profile["in_process_ms"] - profile["sql_ms"])) < 0.2  # rounded apart


def test_history_storage_sizes_the_deal_table_and_the_history_tables(db):
    load_dataset(deals=200, seed=11, now=NOW)
    with connection.cursor() as cursor:
        sizes = history_storage(cursor)
        cursor.execute("SELECT pg_total_relation_size('pipeline_dealstate')")
        assert sizes["pipeline_dealstate"] == cursor.fetchone()[0]
    assert set(sizes) == set(HISTORY_TABLES) and all(size > 0 for size in sizes.values())


def run_plain_sql_here() -> None:
    """The plain SQL on this test's connection (its transaction holds the dataset)."""
    with connection.cursor() as cursor:
        for _label, statement in plain_sql_statements():
            cursor.execute(statement)


def rows(sql: str) -> set:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return set(cursor.fetchall())


def test_plain_sql_agrees_with_the_apps_metrics(db):
    """The lower bound is only a bound if it computes the same numbers: compare the families' key counts."""
    load_dataset(deals=400, seed=11, now=NOW)
    run = recompute_metrics()  # now(): the plain SQL has no as_of
    run_plain_sql_here()
    app = MetricSnapshot.objects.filter(run=run, group_kind="company")

    outcomes = {
        (s.period_kind, s.period_start, s.values["won"], s.values["lost"]) for s in app.filter(metric="deal_outcomes")
    }
    assert outcomes == rows(
        "SELECT kind, period::date, won, lost FROM m_outcomes "
        "WHERE owner_id IS NULL AND team_id IS NULL AND pipeline_id IS NULL AND source IS NULL"
    )
    funnel = {(s.stage_id, s.values["reached"]) for s in app.filter(metric="funnel", period_kind="all")}
    assert funnel == rows("SELECT stage_id, reached FROM m_funnel WHERE kind = 'all' AND g = 7")
    stays = {(s.stage_id, s.values["stays"]) for s in app.filter(metric="stage_time") if s.values["stays"]}
    assert stays == rows(
        "SELECT stage_id, stays FROM m_stage_time WHERE owner_id IS NULL AND team_id IS NULL AND source IS NULL"
    )
    forecast = {
        (s.period_kind, s.period_start, s.values["pipeline"]) for s in app.filter(metric="forecast", pipeline_id=None)
    }
    assert forecast == rows(
        "SELECT kind, period::date, round(coalesce(pipeline, 0), 2)::text FROM m_forecast "
        "WHERE owner_id IS NULL AND team_id IS NULL AND pipeline_id IS NULL AND source IS NULL"
    )
    quotas = MetricSnapshot.objects.filter(run=run, metric="quota")
    attainment = {(s.values["quota_id"], round(s.values["attainment"] or 0, 6)) for s in quotas}
    assert attainment == {(q, round(float(a or 0), 6)) for q, a in rows("SELECT id, attainment FROM m_quota")}


def test_every_row_key_has_its_measurement_and_the_growth_rows_are_rows():
    assert all(callable(getattr(Bench, f"row_{key}", None)) for key in ROWS)
    assert set(GROWTH_ROWS) <= set(ROWS) and len(set(ROWS)) == len(ROWS)
