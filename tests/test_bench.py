"""The pieces of `make bench` that can be wrong without a benchmark noticing: the load driver's counting, the
plain-SQL lower bound agreeing with the app's metrics, and the table. (CI also runs `make bench-small` whole.)"""

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from forecasting.models import MetricSnapshot
from forecasting.services import recompute_metrics
from tools.bench import driver
from tools.bench.harness import format_table, plain_sql_statements
from tools.generators.datasets import load_dataset

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
