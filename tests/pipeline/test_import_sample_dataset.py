"""A file shaped like the public "CRM + Sales + Opportunities" dataset (Kaggle), sales_pipeline.csv:
opportunity_id, sales_agent, product, account, deal_stage (Prospecting/Engaging/Won/Lost), engage_date,
close_date, close_value. Engaging is mapped onto our Qualification stage."""

from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from pipeline.models import Deal, Organization
from tests.factories import make_pipeline, make_user

pytestmark = pytest.mark.django_db

SALES_PIPELINE = (
    "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value\n"
    "1C1I7A6R,Moses Frase,GTX Plus Basic,Cancity,Won,2016-10-20,2017-03-01,1054\n"
    "Z063OYW0,Darcel Schlecht,GTXPro,Isdom,Won,2016-10-25,2017-03-11,4514\n"
    "EC4QE1BX,Darcel Schlecht,MG Special,Cancity,Won,2016-10-25,2017-03-07,50\n"
    "MV1LWRNH,Moses Frase,GTX Basic,Codehow,Lost,2016-10-25,2017-03-09,0\n"
    "PE84CX4O,Zane Levy,GTX Basic,Hatfan,Engaging,2017-10-23,,\n"
    "ZZY4516Q,Anna Snelling,GTX Pro,,Prospecting,,,\n"
)


@pytest.fixture
def sample(tmp_path):
    make_pipeline(name="Sales", is_default=True)
    make_user(username="admin", role="admin")
    path = tmp_path / "sales_pipeline.csv"
    path.write_text(SALES_PIPELINE, encoding="utf-8")
    return path


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def import_sample(path, *extra_maps: str) -> dict[str, Deal]:
    maps = [argument for column_field in ("product=title", *extra_maps) for argument in ("--map", column_field)]
    call_command(
        "import_csv", "deals", str(path), *maps, "--value", "stage:Engaging=Qualification", "--create-missing",
        "--user", "admin",
    )  # fmt: skip
    return {deal.external_id: deal for deal in Deal.objects.select_related("stage", "owner", "organization")}


def entered(deal: Deal) -> list[tuple[str, datetime]]:
    return [(change.to_stage.name, change.changed_at) for change in deal.stage_changes.order_by("changed_at", "id")]


def test_the_sample_imports_with_the_suggested_mapping_and_a_stage_value_mapping(sample):
    deals = import_sample(sample)

    assert len(deals) == 6
    won = deals["1C1I7A6R"]
    assert (won.status, won.amount, won.title, won.organization.name) == ("won", 1054, "GTX Plus Basic", "Cancity")
    assert won.owner.get_full_name() == "Moses Frase" and not won.owner.is_active
    assert (won.created_at, won.closed_at) == (day("2016-10-20"), day("2017-03-01"))  # cycle: 132 days
    assert deals["MV1LWRNH"].status == "lost" and deals["MV1LWRNH"].lost_reason.name == "Unspecified"
    assert deals["PE84CX4O"].stage.name == "Qualification" and deals["PE84CX4O"].closed_at is None
    assert deals["ZZY4516Q"].stage.name == "Prospecting" and deals["ZZY4516Q"].organization is None
    assert deals["EC4QE1BX"].organization == won.organization
    assert entered(won) == [("Prospecting", day("2016-10-20")), ("Won", day("2017-03-01"))]


def test_mapping_the_engage_date_to_entering_qualification_keeps_the_funnel_of_the_sample(sample):
    """Closed deals of the sample were all engaged: with engage_date as their entry into Qualification, they
    count as having reached it, and their cycle still runs from the engage date."""
    deals = import_sample(sample, "engage_date=entered_at:Qualification")

    lost, engaging = deals["MV1LWRNH"], deals["PE84CX4O"]
    assert entered(lost) == [("Qualification", day("2016-10-25")), ("Lost", day("2017-03-09"))]
    assert lost.created_at == day("2016-10-25")
    assert entered(engaging) == [("Qualification", day("2017-10-23"))]
    assert engaging.stage_entered_at == engaging.created_at == day("2017-10-23")


def test_the_samples_accounts_file_loads_as_organizations_that_the_deals_then_link_to(sample, tmp_path):
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(
        "account,sector,year_established,revenue,employees,office_location,subsidiary_of\n"
        "Cancity,retail,2001,718.62,2448,United States,\n"
        "Isdom,medical,2002,3178.24,4540,United States,\n"
        "Codehow,software,1998,2714.9,2641,United States,Acme Corporation\n"
        "Hatfan,services,1982,792.46,1299,United States,\n"
    )

    call_command("import_csv", "organizations", str(accounts))
    deals = import_sample(sample)

    assert deals["MV1LWRNH"].organization.industry == "software"
    assert Organization.objects.count() == 4  # matched by name, none created twice
    assert {deal.organization.name for deal in deals.values() if deal.organization} == {
        "Cancity",
        "Isdom",
        "Codehow",
        "Hatfan",
    }


def test_without_a_title_column_deals_are_named_after_their_account_or_their_id(sample):
    call_command(
        "import_csv", "deals", str(sample), "--value", "stage:Engaging=Qualification", "--create-missing",
        "--user", "admin",
    )  # fmt: skip

    titles = dict(Deal.objects.values_list("external_id", "title"))
    assert titles["1C1I7A6R"] == "Cancity" and titles["ZZY4516Q"] == "ZZY4516Q"
