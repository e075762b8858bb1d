"""The XSS payload matrix (SPEC §7, issue #8): every page that shows user text × several payloads.

Each payload goes into every text a user (or an import) can set: names of users, teams, pipelines, stages and lost
reasons; organizations, contacts, deals (title, BANT, source, lost note, the audit trail of a rename), leads,
activities, API tokens, quotas' holders, and the name, headers and cells of an uploaded CSV. Every page is then read,
as an admin (who sees everything), and parsed: no element, event handler, script or `javascript:` link may come out of
the payload, and the payload must be shown, escaped, so that a page which dropped the text cannot pass for one that
escaped it. One test per payload builds the data once and reads every page, naming each page that fails.

`javascript:` URLs never get as far as a page: websites and emails are refused at every door (last test).
"""

import csv
import html
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from accounts.services import create_api_token
from forecasting.models import Quota
from forecasting.periods import Period
from forecasting.services import recompute_metrics, submit_forecast
from pipeline import services
from pipeline.models import ImportJob, Organization
from tests.api.conftest import client_for
from tests.factories import make_deal, make_lost_reason, make_qualified_deal, stage

pytestmark = pytest.mark.django_db

# Each carries its own marker, so that an injection found on a page names the payload that made it.
PAYLOADS = [
    "<script>alert('xss-1')</script>",
    '"><img src=x onerror=alert("xss-2")>',
    "'><svg onload=alert('xss-3')>",
    "</textarea><script>alert('xss-4')</script>",
    "</script><script>alert('xss-5')</script>",
    "<a href=\"javascript:alert('xss-6')\">x</a>",
    "javascript:alert('xss-7')//",
    "{{ 7|add:'xss-8' }}<!--",
]


def marker(payload: str) -> str:
    return next(
        word for word in payload.replace("'", " ").replace('"', " ").replace(")", " ").split() if "xss-" in word
    )


class InjectionFinder(HTMLParser):
    """Collects what a payload made executable: an event handler or a `javascript:` link carrying its marker, an
    element of its own (img, svg, a with its marker), or a script whose code carries it. JSON data blocks
    (`json_script`) are data, not code."""

    def __init__(self, mark: str):
        super().__init__(convert_charrefs=True)
        self.mark = mark
        self.found: list[str] = []
        self._in_code = False

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        for name, value in attrs:
            value = value or ""
            if name.startswith("on") and self.mark in value:
                self.found.append(f"<{tag} {name}={value!r}>")
            if name in {"href", "src", "action", "formaction"} and value.strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value!r}>")
        if tag in {"img", "svg"} and values.get("src") == "x":
            self.found.append(f"<{tag} src=x>")
        if tag == "script":
            self._in_code = values.get("type") not in {"application/json"}

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_code = False

    def handle_data(self, data):
        if self._in_code and self.mark in data:
            self.found.append(f"script: {data.strip()[:80]!r}")

    def handle_comment(self, data):
        # An opened comment would hide the rest of the page: only the app's own comments may appear.
        if self.mark in data:
            self.found.append(f"comment: {data[:80]!r}")


class World:
    """One payload in every user-set text, through the services (and the import page) as the app writes them."""

    def __init__(self, payload: str, org, pipeline, client):
        p = self.payload = payload
        self.org = org
        org.rep.first_name, org.rep.last_name = p, p
        org.rep.save()
        org.team.name = p[:100]
        org.team.save()
        pipeline.name = p
        pipeline.save()
        self.pipeline = pipeline
        self.stage = stage(pipeline, "Qualification")
        self.stage.name = p
        self.stage.save()
        self.lost_reason = make_lost_reason(p)
        submit_forecast(user=org.rep, period=Period.current("quarter"), category="commit", amount="1", note=p)

        self.organization = services.create_organization(actor=org.rep, name=p, industry=p)
        self.contact = services.create_contact(
            actor=org.rep, first_name=p, last_name=p, job_title=p, phone=p[:50], organization=self.organization
        )
        self.deal = make_qualified_deal(owner=org.rep, pipeline=pipeline, title=f"Before {p}", contact=self.contact)
        self.deal = services.update_deal(
            deal=self.deal,
            actor=org.rep,
            title=p,
            organization=self.organization,
            source=p,
            need=p,
            authority=p,
            timeline=p,
            external_id=p,
        )
        self.deal = services.move_deal(deal=self.deal, actor=org.rep, stage=self.stage)
        self.lost_deal = make_qualified_deal(owner=org.rep, pipeline=pipeline, title=p, organization=self.organization)
        self.lost_deal = services.move_deal(
            deal=self.lost_deal, actor=org.rep, stage=stage(pipeline, "Lost"), lost_reason=self.lost_reason
        )
        self.lost_deal = services.update_deal(deal=self.lost_deal, actor=org.rep, lost_note=p)
        won = make_qualified_deal(owner=org.rep, pipeline=pipeline, title=p)
        services.move_deal(deal=won, actor=org.rep, stage=stage(pipeline, "Won"))
        # Stale for the dashboard: in its stage for longer than its rotting days.
        make_deal(owner=org.rep, pipeline=pipeline, title=p, created_at=timezone.now() - timedelta(days=60))

        self.lead = services.create_lead(
            actor=org.rep,
            first_name=p,
            last_name=p,
            company=p,
            job_title=p,
            phone=p[:50],
            source=p,
            need=p,
            authority=p,
            timeline=p,
            organization=self.organization,
            contact=self.contact,
        )
        dropped = services.create_lead(actor=org.rep, last_name=p)
        services.advance_lead(lead=dropped, actor=org.rep, status="disqualified", reason=p)
        soon = timezone.now() + timedelta(hours=2)
        for record in ({"deal": self.deal}, {"lead": self.lead}):
            services.log_activity(actor=org.rep, kind="call", subject=p, note=p, due_at=soon, **record)
            services.log_activity(actor=org.rep, kind="note", subject=p, note=p, **record)

        create_api_token(user=org.admin, name=p)
        self.quota = Quota.objects.create(
            user=org.rep, period_start="2026-10-01", period_end="2027-01-01", amount="50000.00"
        )
        recompute_metrics()

        # An upload whose header and cells carry the payload, checked (dry run) so that its report lists them.
        client.force_login(org.admin)
        rows = io.StringIO()
        csv.writer(rows).writerows([["Title", "Stage", "Owner", p], [p, "Nowhere", p, "x"]])
        csv_text = rows.getvalue()
        upload = SimpleUploadedFile(f"{p}.csv", csv_text.encode(), content_type="text/csv")
        response = client.post(reverse("pipeline:imports"), {"file": upload, "kind": "deals"})
        assert response.status_code == 302, response.content[:500]
        self.mapping_url = response["Location"]
        form = client.get(self.mapping_url).context["form"]
        data = {name: form[name].value() or "" for name in form.fields if name != "create_missing"}
        response = client.post(self.mapping_url, {**data, "action": "dry_run"})
        assert response.status_code == 302, response.content[:500]
        self.job = ImportJob.objects.latest("pk")


@dataclass(frozen=True)
class Page:
    name: str
    url: Callable[[World], str]
    method: str = "get"
    data: Callable[[World], dict] | None = None
    # Whether the page shows this payload in full (escaped).
    shows: Callable[[str], bool] = lambda payload: True
    # Parts of the page (from a start marker to the end tag after it) that must show the payload themselves.
    sections: tuple[tuple[str, str], ...] = ()


PAGES = [
    Page(
        "board",
        lambda w: reverse("pipeline:board_pipeline", args=[w.pipeline.pk]),
        sections=(('class="deal-card', "</article>"),),
    ),
    Page("board searched for the payload", lambda w: reverse("pipeline:board") + f"?q={quote(w.payload[:100])}"),
    Page(
        "deal page with timeline and audit trail",
        lambda w: reverse("pipeline:deal", args=[w.deal.pk]),
        sections=(('id="timeline-body"', "</ul>"), ('class="timeline audit"', "</ul>")),
    ),
    Page("lost deal page", lambda w: reverse("pipeline:deal", args=[w.lost_deal.pk])),
    Page("deal fields form", lambda w: reverse("pipeline:deal_fields", args=[w.deal.pk]) + "?edit=1"),
    Page(
        "move dialog asking for a lost reason",
        lambda w: reverse("pipeline:deal_move", args=[w.deal.pk]),
        method="post",
        data=lambda w: {"stage": stage(w.pipeline, "Lost").pk, "version": w.deal.version},
    ),
    Page("new deal form", lambda w: reverse("pipeline:deal_create", args=[w.pipeline.pk])),
    Page("leads list", lambda w: reverse("pipeline:leads")),
    Page("leads list filtered by the payload", lambda w: reverse("pipeline:leads") + f"?source={quote(w.payload)}"),
    Page("lead page", lambda w: reverse("pipeline:lead", args=[w.lead.pk])),
    Page("new lead form", lambda w: reverse("pipeline:lead_create")),
    Page("activities inbox", lambda w: reverse("pipeline:activities")),
    Page("organizations list", lambda w: reverse("pipeline:organizations")),
    Page(
        "organizations list searched for the payload",
        lambda w: reverse("pipeline:organizations") + f"?q={quote(w.payload[:100])}",
    ),
    Page(
        "organization page with deals, activities and timeline",
        lambda w: reverse("pipeline:organization", args=[w.organization.pk]),
        sections=(('class="timeline customer-timeline"', "</ul>"), ('class="people"', "</ul>")),
    ),
    Page("organization form", lambda w: reverse("pipeline:organization_edit", args=[w.organization.pk])),
    Page("contacts list", lambda w: reverse("pipeline:contacts")),
    Page("contact page", lambda w: reverse("pipeline:contact", args=[w.contact.pk])),
    Page("contact form", lambda w: reverse("pipeline:contact_edit", args=[w.contact.pk])),
    Page(
        "dashboard",
        lambda w: reverse("forecasting:dashboard"),
        sections=(('id="reps"', "</table>"), ('id="stale-deals"', "</ul>")),
    ),
    Page("forecast call with a submission's note", lambda w: reverse("forecast:call")),
    Page("settings: pipelines", lambda w: reverse("settings:pipelines")),
    Page("settings: pipeline and its stages", lambda w: reverse("settings:pipeline", args=[w.pipeline.pk])),
    Page("settings: stage", lambda w: reverse("settings:stage", args=[w.stage.pk])),
    Page("settings: lost reasons", lambda w: reverse("settings:lost_reasons")),
    Page("settings: lost reason", lambda w: reverse("settings:lost_reason", args=[w.lost_reason.pk])),
    Page("settings: teams", lambda w: reverse("settings:teams")),
    Page("settings: team", lambda w: reverse("settings:team", args=[w.org.team.pk])),
    Page("settings: quotas", lambda w: reverse("settings:quotas")),
    Page("settings: quota", lambda w: reverse("settings:quota", args=[w.quota.pk])),
    Page("settings: API tokens", lambda w: reverse("settings:tokens")),
    # An upload keeps only the base name of its file name: a payload with a slash loses what comes before it.
    Page("imports", lambda w: reverse("pipeline:imports"), shows=lambda payload: "/" not in payload),
    Page("import mapping", lambda w: w.mapping_url),
    Page("import report", lambda w: reverse("pipeline:import_job", args=[w.job.pk])),
]


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def problems_of(page: Page, world: World, client) -> list[str]:
    """What is wrong with `page` for the world's payload: an error status, an injection, the raw payload, or no
    sign of the payload at all."""
    if page.method == "post":
        response = client.post(page.url(world), page.data(world), HTTP_HX_REQUEST="true")
    else:
        response = client.get(page.url(world))
    if response.status_code != 200:
        return [f"answered {response.status_code}"]
    content = response.content.decode()
    finder = InjectionFinder(marker(world.payload))
    finder.feed(content)
    problems = [f"injected {found}" for found in finder.found]
    if "<" in world.payload and world.payload in content:
        problems.append("the payload is in the page unescaped")
    escaped = html.escape(world.payload)
    if page.shows(world.payload) and escaped not in content:
        problems.append("the payload is not shown at all")
    for start, end in page.sections:
        begin = content.find(start)
        if begin < 0 or escaped not in content[begin : content.find(end, begin)]:
            problems.append(f"the payload is not shown in the part at {start}")
    return problems


@pytest.mark.parametrize("payload", PAYLOADS, ids=[marker(payload) for payload in PAYLOADS])
def test_user_text_is_shown_escaped_and_never_runs_on_any_page(payload, client, org, pipeline):
    world = World(payload, org, pipeline, client)
    client.force_login(org.admin)

    problems = {page.name: problems_of(page, world, client) for page in PAGES}

    assert {name: found for name, found in problems.items() if found} == {}
    assert len(problems) == len(PAGES) == 34


@pytest.mark.parametrize("url", ["javascript:alert('xss')", "JaVaScRiPt://%0aalert(1)", "data:text/html,<script>"])
def test_javascript_urls_are_refused_at_every_door(url, org, pipeline):
    api = client_for(org.rep)

    organization = api.post("/api/v1/organizations/", {"name": "Acme", "website": url}, format="json")
    contact = api.post("/api/v1/contacts/", {"last_name": "Lee", "email": url}, format="json")
    lead = api.post("/api/v1/leads/", {"last_name": "Lee", "email": url}, format="json")

    assert (organization.status_code, list(organization.json())) == (400, ["website"])
    assert (contact.status_code, list(contact.json())) == (400, ["email"])
    assert (lead.status_code, list(lead.json())) == (400, ["email"])
    with pytest.raises(ValidationError):
        services.create_organization(actor=org.rep, name="Acme", website=url)
    assert not Organization.objects.exists()
