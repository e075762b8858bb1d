"""`make backup` / `make restore` (tools.backup) round-trip a seeded database and its uploads: restored into a fresh
database, every table holds the same rows, the sequences go on where they were, the field history's triggers still
record, and the app serving the restored database answers the metrics and the deal list as the original does."""

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings
from django.db import connection
from django.test import Client
from psycopg import sql

from accounts.models import User
from accounts.services import create_api_token
from forecasting.services import recompute_metrics
from pipeline.models import Deal, DealStatus
from pipeline.services import update_deal
from tests.faults.conftest import REQUEST_TIMEOUT, ROOT, app_env, committed_database_url, start_web
from tools.generators.demo import seed_demo

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Numbers that change with the clock rather than with the data.
CLOCK_KEYS = {"age_seconds", "out_of_date"}
MEDIA = {
    "imports/2026/11/deals.csv": b"title,amount\nAcme renewal,1200\n",
    "imports/leads ü.csv": "name\nZoë\n".encode(),
    "top.bin": bytes(range(256)),
}


def tables_and_sequences(url: str) -> tuple[dict[str, tuple[int, str]], dict[str, tuple[int, bool]]]:
    """Every table of the public schema → (rows, md5 of its sorted rows), every sequence → its position."""
    with psycopg.connect(url) as conn:
        tables = [name for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        contents = {}
        for table in tables:
            contents[table] = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} t"
                ).format(sql.Identifier(table))
            ).fetchone()
        sequences = {
            name: conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(name))).fetchone()
            for (name,) in conn.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
        }
    return contents, sequences


def without_clock(value):
    if isinstance(value, dict):
        return {key: without_clock(item) for key, item in value.items() if key not in CLOCK_KEYS}
    if isinstance(value, list):
        return [without_clock(item) for item in value]
    return value


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def run_backup_tool(*args: str, database_url: str, media_root: Path) -> subprocess.CompletedProcess:
    """`python -m tools.backup`, what `make backup` / `make restore` run, on the given database and folder."""
    env = app_env(database_url=database_url, redis_url=settings.REDIS_URL, MEDIA_ROOT=str(media_root))
    return subprocess.run(
        [sys.executable, "-m", "tools.backup", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def fresh_database_url():
    """The URL of a database that does not exist yet (the restore creates it), dropped afterwards."""
    name = f"{connection.settings_dict['NAME']}_restored"
    source = committed_database_url()
    maintenance = source.rsplit("/", 1)[0] + "/postgres"

    def drop():
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    drop()
    yield source.rsplit("/", 1)[0] + f"/{name}"
    drop()


def test_a_backup_restored_into_a_fresh_database_gives_identical_records_history_metrics_and_uploads(
    tmp_path, processes, fresh_database_url
):
    seed_demo(deals=60, seed=11)
    admin = User.objects.get(username="admin")
    # Field history with an author beside the seeded one, and a complete metrics run to compare.
    deal = Deal.objects.filter(status=DealStatus.OPEN).order_by("pk").first()
    update_deal(deal=deal, actor=admin, amount=deal.amount + Decimal("1234.50"))
    assert recompute_metrics() is not None
    _, token = create_api_token(user=admin, name="backup round trip")
    media = tmp_path / "media"
    for name, content in MEDIA.items():
        (media / name).parent.mkdir(parents=True, exist_ok=True)
        (media / name).write_bytes(content)
    source_url = committed_database_url()
    backup_dir = tmp_path / "backups" / "one"

    made = run_backup_tool("backup", str(backup_dir), database_url=source_url, media_root=media)
    assert made.returncode == 0, made.stderr
    assert sorted(path.name for path in backup_dir.iterdir()) == ["database.dump", "manifest.json", "media.tar"]

    before = tables_and_sequences(source_url)
    refused = run_backup_tool("restore", str(backup_dir), database_url=source_url, media_root=media)
    assert refused.returncode == 1
    assert "Refusing to restore over existing data" in refused.stderr
    assert f"database {connection.settings_dict['NAME']} has" in refused.stderr
    assert tables_and_sequences(source_url) == before  # nothing touched

    restored_media = tmp_path / "restored-media"
    restored = run_backup_tool("restore", str(backup_dir), database_url=fresh_database_url, media_root=restored_media)
    assert restored.returncode == 0, restored.stderr

    contents, sequences = tables_and_sequences(fresh_database_url)
    assert contents == before[0]
    assert sequences == before[1]  # new rows get new ids
    for table in ("pipeline_deal", "pipeline_stagechange", "pipeline_dealstate", "pipeline_activity"):
        assert contents[table][0] > 0, table  # the comparison is not of empty tables
    assert contents["forecasting_metricsnapshot"][0] > 0
    assert files_under(restored_media) == MEDIA

    # The app on the restored database answers as it does on the original (metrics are read from the snapshots).
    base_url, _ = start_web(processes, app_env(database_url=fresh_database_url, redis_url=settings.REDIS_URL))
    original = Client(headers={"Authorization": f"Bearer {token}"})
    for path in ("/api/v1/metrics/win-rates/?period=2026", "/api/v1/forecast/", "/api/v1/deals/?count=true"):
        answer = requests.get(base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT)
        expected = original.get(path)
        assert answer.status_code == expected.status_code == 200, (path, answer.text[:300])
        # Links name the host asked (the test client's is "testserver").
        body = json.loads(answer.text.replace(base_url, "http://testserver"))
        assert without_clock(body) == without_clock(expected.json()), path
        assert body["results"], path

    # The triggers came back too: a raw change of an amount in the restored database records its interval.
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        states = conn.execute("SELECT count(*) FROM pipeline_dealstate WHERE deal_id = %s", [deal.pk]).fetchone()[0]
        conn.execute("UPDATE pipeline_deal SET amount = amount + 1 WHERE id = %s", [deal.pk])
        assert conn.execute("SELECT count(*) FROM pipeline_dealstate WHERE deal_id = %s", [deal.pk]).fetchone()[0] == (
            states + 1
        )

    # Forced over a database and folder that hold data, the result is the backup again, and nothing else.
    (restored_media / "stray.csv").write_text("left over")
    forced = run_backup_tool(
        "restore", str(backup_dir), "--force", database_url=fresh_database_url, media_root=restored_media
    )
    assert forced.returncode == 0, forced.stderr
    assert tables_and_sequences(fresh_database_url) == before
    assert files_under(restored_media) == MEDIA
