"""The OpenAPI schema: valid, free of generator warnings, and honest about errors, enums and nullable fields."""

from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_validates_without_warnings(tmp_path):
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"), stdout=StringIO()
    )


def test_every_operation_documents_its_error_answers(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"401", "403", "404", "429"} <= codes, (method, path)
            if method in {"put", "patch"}:
                assert {"400", "412"} <= codes, (method, path)
    move = schema["paths"]["/api/v1/deals/{id}/move/"]["post"]["responses"]
    assert {"400", "409", "412"} <= set(move)
    assert move["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ValidationErrorBody"}


def test_enums_and_nullable_fields_are_described(schema):
    components = schema["components"]["schemas"]
    assert components["StageKindEnum"]["enum"] == ["open", "won", "lost"]
    assert set(components["LeadStatusEnum"]["enum"]) >= {"new", "sql", "converted"}
    deal = components["Deal"]["properties"]
    assert deal["amount"]["nullable"] is True and deal["amount"]["type"] == "string"
    assert deal["closed_at"]["nullable"] is True
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A personal API token: `crm_<prefix>.<secret>`.",
    }


def test_metric_reads_document_their_rows_parameters_and_answers(schema):
    components = schema["components"]["schemas"]
    win_rate = components["WinRateRow"]["properties"]
    assert win_rate["win_rate"] == {
        "type": "number",
        "format": "double",
        "nullable": True,
        "description": "won / (won + lost), from 0 to 1; null when nothing closed.",
    }
    assert win_rate["won_amount"]["type"] == "string" and "nullable" not in win_rate["won_amount"]
    assert components["WinRatePage"]["properties"]["computed_at"]["nullable"] is True
    backtest = components["BacktestRow"]["properties"]
    assert backtest["ape_learned"]["nullable"] is True and backtest["weighted_learned"]["type"] == "string"
    summary = components["BacktestPage"]["properties"]["summary"]
    assert summary["items"] == {"$ref": "#/components/schemas/BacktestSummary"}
    assert components["BacktestSummary"]["properties"]["wape_configured"]["nullable"] is True
    calibration = components["CalibrationRow"]["properties"]
    assert calibration["bins_learned"]["items"] == {"$ref": "#/components/schemas/ReliabilityBin"}
    funnel = schema["paths"]["/api/v1/metrics/funnel/"]["get"]
    parameters = {parameter["name"]: parameter["schema"] for parameter in funnel["parameters"]}
    assert parameters["group"]["enum"] == ["company", "owner", "team", "source"]
    assert parameters["period"]["pattern"] and {"cursor", "page_size", "count"} <= set(parameters)
    recompute = schema["paths"]["/api/v1/metrics/recompute/"]["post"]["responses"]
    assert recompute["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RecomputeQueued"}
    assert recompute["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorDetail"}
    quota = components["Quota"]["properties"]
    assert quota["metrics"]["nullable"] is True and quota["metrics"]["readOnly"] is True


def test_the_event_list_and_replay_are_documented(schema):
    events = schema["paths"]["/api/v1/events/"]["get"]
    parameters = {parameter["name"]: parameter for parameter in events["parameters"]}
    assert {"after", "type", "cursor", "page_size"} <= set(parameters)
    assert parameters["after"]["schema"] == {"type": "integer", "minimum": 0}
    assert "sequence" in parameters["after"]["description"]
    assert "deal.won" in parameters["type"]["schema"]["enum"]
    row = schema["components"]["schemas"]["WebhookEvent"]["properties"]
    assert set(row) == {"id", "sequence", "type", "created_at", "data"}
    replay = schema["paths"]["/api/v1/webhooks/{id}/replay/"]["post"]
    assert {"202", "400", "404"} <= set(replay["responses"])
    body = replay["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][body]["properties"]) == {"after", "since"}
    answer = replay["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][answer]["properties"]) == {"queued", "last_sequence", "complete"}
