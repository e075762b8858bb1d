"""The access matrix of SPEC §7, generated from tables: every endpoint × every role answers as SPEC §2 says.

The subjects are records owned by `org.rep` (see `rep_records`). Who may see them: the rep, their manager and the
admin (and, when REP_VISIBILITY is "team", the rep's teammate, who still may not change them). Everyone else gets a
404, never a 403 that would confirm the record exists; anonymous requests and revoked tokens get a 401.
"""

import pytest

from tests.factories import stage

pytestmark = pytest.mark.django_db

ROLES = ["rep", "teammate", "other_rep", "manager", "other_manager", "admin", "anonymous", "revoked_token"]
UNAUTHENTICATED = {"anonymous", "revoked_token"}


def sees(role: str, visibility: str) -> bool:
    return role in {"rep", "manager", "admin"} or (visibility == "team" and role == "teammate")


def edits(role: str) -> bool:
    return role in {"rep", "manager", "admin"}


# (endpoint, method, path, body, success status, kind). Paths and bodies are formatted with the subjects' ids.
# kind "read": 200 when the role sees the record, else 404. "write": success when it may change it, 403 when it
# only sees it, else 404.
RECORD_ENDPOINTS = [
    ("deal detail", "get", "/api/v1/deals/{deal}/", None, 200, "read"),
    ("deal history", "get", "/api/v1/deals/{deal}/history/", None, 200, "read"),
    ("deal update", "put", "/api/v1/deals/{deal}/", {"title": "Renamed"}, 200, "write"),
    ("deal partial update", "patch", "/api/v1/deals/{deal}/", {"title": "Renamed"}, 200, "write"),
    ("deal move", "post", "/api/v1/deals/{deal}/move/", {"stage": "{qualification}"}, 200, "write"),
    ("lead detail", "get", "/api/v1/leads/{lead}/", None, 200, "read"),
    ("lead update", "put", "/api/v1/leads/{lead}/", {"last_name": "Renamed"}, 200, "write"),
    ("lead partial update", "patch", "/api/v1/leads/{lead}/", {"score": 50}, 200, "write"),
    ("lead status", "post", "/api/v1/leads/{lead}/status/", {"status": "contacted"}, 200, "write"),
    ("lead convert", "post", "/api/v1/leads/{lead}/convert/", {}, 201, "write"),
    ("activity detail", "get", "/api/v1/activities/{activity}/", None, 200, "read"),
    ("activity update", "put", "/api/v1/activities/{activity}/", {"kind": "email", "subject": "Re"}, 200, "write"),
    ("activity partial update", "patch", "/api/v1/activities/{activity}/", {"subject": "Re"}, 200, "write"),
    ("activity complete", "post", "/api/v1/activities/{planned}/complete/", None, 200, "write"),
    ("organization detail", "get", "/api/v1/organizations/{organization}/", None, 200, "read"),
    ("organization update", "put", "/api/v1/organizations/{organization}/", {"name": "Renamed"}, 200, "write"),
    ("organization partial update", "patch", "/api/v1/organizations/{organization}/", {"name": "R"}, 200, "write"),
    ("contact detail", "get", "/api/v1/contacts/{contact}/", None, 200, "read"),
    ("contact update", "put", "/api/v1/contacts/{contact}/", {"last_name": "Renamed"}, 200, "write"),
    ("contact partial update", "patch", "/api/v1/contacts/{contact}/", {"last_name": "R"}, 200, "write"),
    ("user detail", "get", "/api/v1/users/{rep}/", None, 200, "read"),
]

# Lists, with the filters and search that must not leak: the rep's record is listed exactly for those who see it.
LIST_ENDPOINTS = [
    ("deals", "/api/v1/deals/?page_size=200", "deal"),
    ("deals by owner", "/api/v1/deals/?owner={rep}", "deal"),
    ("deals by team", "/api/v1/deals/?team={team}", "deal"),
    ("deals by organization", "/api/v1/deals/?organization={organization}", "deal"),
    ("deals by search", "/api/v1/deals/?search=Deal%20of%20rep", "deal"),
    ("deals by external id", "/api/v1/deals/?external_id=ext-deal-of-rep", "deal"),
    ("deals ordered by amount", "/api/v1/deals/?ordering=-amount", "deal"),
    ("leads", "/api/v1/leads/", "lead"),
    ("leads by owner and search", "/api/v1/leads/?owner={rep}&search=Lead%20of%20rep", "lead"),
    ("activities", "/api/v1/activities/", "activity"),
    ("activities of the deal", "/api/v1/activities/?deal={deal}", "activity"),
    ("organizations", "/api/v1/organizations/?search=Acme", "organization"),
    ("contacts", "/api/v1/contacts/?organization={organization}", "contact"),
    ("users", "/api/v1/users/?team={team}", "rep"),
]

# Readable by everyone signed in.
SHARED_ENDPOINTS = [
    ("pipelines", "/api/v1/pipelines/"),
    ("pipeline detail", "/api/v1/pipelines/{pipeline}/"),
    ("stages", "/api/v1/stages/?pipeline={pipeline}"),
    ("stage detail", "/api/v1/stages/{qualification}/"),
    ("lost reasons", "/api/v1/lost-reasons/"),
    ("teams", "/api/v1/teams/"),
    ("team detail", "/api/v1/teams/{team}/"),
    ("me", "/api/v1/me/"),
    ("tokens", "/api/v1/tokens/"),
]

# Writes naming the rep's records by id: accepted only from those who may see (or, for owners, change) them;
# anyone else gets the 404 of an id that does not exist.
NESTED_WRITES = [
    ("deal for the rep's organization", "/api/v1/deals/", {"title": "T", "organization": "{organization}"}, sees),
    ("deal with the rep's contact", "/api/v1/deals/", {"title": "T", "contact": "{contact}"}, sees),
    ("deal owned by the rep", "/api/v1/deals/", {"title": "T", "owner": "{rep}"}, lambda r, v: edits(r)),
    ("lead owned by the rep", "/api/v1/leads/", {"last_name": "L", "owner": "{rep}"}, lambda r, v: edits(r)),
    (
        "activity on the rep's deal",
        "/api/v1/activities/",
        {"kind": "call", "subject": "S", "deal": "{deal}"},
        lambda r, v: edits(r),
    ),
]


# Configuration writes: admins only; everyone else signed in gets 403 (the configuration is visible to them).
ADMIN_WRITES = [
    (
        "create pipeline",
        "post",
        "/api/v1/pipelines/",
        {
            "name": "P2",
            "stages": [
                {"name": "Open", "probability": 10},
                {"name": "W", "kind": "won", "probability": 100},
                {"name": "L", "kind": "lost", "probability": 0},
            ],
        },
        201,
    ),
    ("rename pipeline", "patch", "/api/v1/pipelines/{pipeline}/", {"name": "Renamed"}, 200),
    ("create stage", "post", "/api/v1/stages/", {"pipeline": "{pipeline}", "name": "S", "probability": 5}, 201),
    ("change stage", "patch", "/api/v1/stages/{qualification}/", {"probability": 25}, 200),
    ("create lost reason", "post", "/api/v1/lost-reasons/", {"name": "Budget cut"}, 201),
    ("retire lost reason", "patch", "/api/v1/lost-reasons/{lost_reason}/", {"is_active": False}, 200),
    ("create team", "post", "/api/v1/teams/", {"name": "North"}, 201),
    ("rename team", "put", "/api/v1/teams/{team}/", {"name": "East Coast"}, 200),
]


@pytest.fixture
def ids(org, pipeline, rep_records, lost_reason):
    r = rep_records
    r.deal.external_id = "ext-deal-of-rep"
    r.deal.save(update_fields=["external_id"])
    return {
        "deal": r.deal.pk,
        "lead": r.lead.pk,
        "activity": r.activity.pk,
        "planned": r.planned.pk,
        "organization": r.organization.pk,
        "contact": r.contact.pk,
        "rep": org.rep.pk,
        "team": org.team.pk,
        "pipeline": pipeline.pk,
        "qualification": stage(pipeline, "Qualification").pk,
        "lost_reason": lost_reason.pk,
    }


def fill(template, ids):
    """`template` (a path or a body) with its "{name}" placeholders replaced by the subjects' ids."""
    if template is None:
        return None
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(item, ids) for item in template]
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return ids[template[1:-1]]
    return template.format(**ids) if isinstance(template, str) else template


def expected_status(role: str, visibility: str, success: int, kind: str) -> int:
    if role in UNAUTHENTICATED:
        return 401
    if kind == "read":
        return success if sees(role, visibility) else 404
    if edits(role):
        return success
    return 403 if sees(role, visibility) else 404


@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("endpoint", "method", "path", "body", "success", "kind"), RECORD_ENDPOINTS, ids=[e[0] for e in RECORD_ENDPOINTS]
)
def test_record_endpoint_answers_by_role(
    settings, api, ids, visibility, role, endpoint, method, path, body, success, kind
):
    settings.REP_VISIBILITY = visibility
    response = getattr(api(role), method)(fill(path, ids), fill(body, ids), format="json")
    assert response.status_code == expected_status(role, visibility, success, kind), response.content


@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("endpoint", "path", "subject"), LIST_ENDPOINTS, ids=[e[0] for e in LIST_ENDPOINTS])
def test_list_shows_the_record_exactly_to_those_who_see_it(
    settings, api, ids, visibility, role, endpoint, path, subject
):
    settings.REP_VISIBILITY = visibility
    response = api(role).get(fill(path, ids))
    if role in UNAUTHENTICATED:
        assert response.status_code == 401
        return
    assert response.status_code == 200, response.content
    listed = {row["id"] for row in response.json()["results"]}
    assert (ids[subject] in listed) == sees(role, visibility)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("endpoint", "path"), SHARED_ENDPOINTS, ids=[e[0] for e in SHARED_ENDPOINTS])
def test_shared_endpoint_answers_everyone_signed_in(api, ids, role, endpoint, path):
    response = api(role).get(fill(path, ids))
    assert response.status_code == (401 if role in UNAUTHENTICATED else 200), response.content


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("endpoint", "path", "body", "allowed"), NESTED_WRITES, ids=[e[0] for e in NESTED_WRITES])
def test_write_naming_a_record_needs_access_to_it(api, ids, role, endpoint, path, body, allowed):
    response = api(role).post(path, fill(body, ids), format="json")
    if role in UNAUTHENTICATED:
        assert response.status_code == 401
    elif allowed(role, "own"):
        assert response.status_code == 201, response.content
    else:
        assert response.status_code == 404, response.content
        field = next(name for name in body if name not in {"title", "last_name", "kind", "subject"})
        assert f"No {field} with id" in response.json()["detail"]


@pytest.mark.parametrize("role", ROLES)
def test_api_tokens_are_private_to_their_owner(org, api, role):
    from accounts.services import create_api_token

    token, _ = create_api_token(user=org.rep, name="rep's integration")
    client = api(role)
    detail = client.get(f"/api/v1/tokens/{token.pk}/")
    revoke = client.delete(f"/api/v1/tokens/{token.pk}/")
    expected = 401 if role in UNAUTHENTICATED else (200 if role == "rep" else 404)
    assert detail.status_code == expected
    assert revoke.status_code == (204 if role == "rep" else expected)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("endpoint", "method", "path", "body", "success"), ADMIN_WRITES, ids=[e[0] for e in ADMIN_WRITES]
)
def test_only_admins_change_the_configuration(api, ids, role, endpoint, method, path, body, success):
    response = getattr(api(role), method)(fill(path, ids), fill(body, ids), format="json")
    expected = 401 if role in UNAUTHENTICATED else success if role == "admin" else 403
    assert response.status_code == expected, response.content
