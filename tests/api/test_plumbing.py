"""What every endpoint shares: error bodies, body size limit, throttling, unknown URLs, the base viewset's rule."""

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import QueryDict

from config.api import VisibleViewSet
from pipeline import services
from pipeline.api.filters import DealFilter
from pipeline.models import Deal
from tests.api.conftest import client_for
from tests.factories import make_deal, make_lost_reason

pytestmark = pytest.mark.django_db


def test_a_body_over_the_limit_is_413(org, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client_for(org.rep).post(
        "/api/v1/leads/", '{"last_name": "' + "x" * 2000 + '"}', content_type="application/json"
    )
    assert response.status_code == 413 and "detail" in response.json()


def test_a_body_that_is_not_json_is_415(org):
    response = client_for(org.rep).post(
        "/api/v1/leads/", "last_name=L", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415


def test_unknown_api_urls_answer_json_404(org):
    response = client_for(org.rep).get("/api/v1/nothing-here/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_a_viewset_may_not_override_get_queryset():
    with pytest.raises(ImproperlyConfigured, match="visible_queryset"):

        class Leaky(VisibleViewSet):
            def get_queryset(self):
                return []


def test_a_viewset_may_not_override_get_object_nor_get_permissions_even_through_a_mixin():
    with pytest.raises(ImproperlyConfigured, match=r"LeakyDetail overrides get_object: .*editable_queryset"):

        class LeakyDetail(VisibleViewSet):
            def get_object(self):
                return None

    class OpenDoor:
        def get_permissions(self):
            return []

    with pytest.raises(ImproperlyConfigured, match="Unguarded overrides get_permissions: set permission_classes"):

        class Unguarded(OpenDoor, VisibleViewSet):
            pass

    class Guarded(VisibleViewSet):  # naming the safe hooks is what a viewset does instead
        permission_classes = []

        def visible_queryset(self):
            return []

    assert Guarded.permission_classes == []


def test_every_api_viewset_reads_through_the_visibility_base():
    """A new endpoint under /api/v1/ must get its rows from a visible_* selector, i.e. extend VisibleViewSet."""
    from accounts.api import urls as account_urls
    from accounts.api.views import MeView
    from forecasting.api import urls as forecasting_urls
    from forecasting.api.views import ComputedReadView, RecomputeStatusView, RecomputeView
    from pipeline.api import urls as pipeline_urls

    # MeView only ever shows the requesting user; the recompute views read no rows (a task and its state); the
    # computed reads (waterfall, slippage, pacing, the forecast call's roll-up, trend and reliability) come from
    # selectors that take the user and apply the metric rows' visibility, which tests/api/test_access_matrix.py
    # checks role by role.
    def descendants(cls):
        return {sub for child in cls.__subclasses__() for sub in {child, *descendants(child)}}

    computed_reads = {view for view in descendants(ComputedReadView) if not view.__subclasses__()}
    allowed_without_base = {MeView, RecomputeView, RecomputeStatusView, *computed_reads}
    views = {
        getattr(pattern.callback, "cls", None)
        for module in (account_urls, pipeline_urls, forecasting_urls)
        for pattern in module.urlpatterns
    }
    assert views - allowed_without_base
    for view in views - allowed_without_base:
        assert issubclass(view, VisibleViewSet), view


def compiled_lists() -> list[str]:
    """The list routes of the API whose serializer `list_representation` compiles (the others stay with DRF)."""
    from django.urls import URLPattern, URLResolver, get_resolver

    from config.api import VisibleViewSet, list_representation

    found = []

    def walk(patterns, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                view = getattr(entry.callback, "cls", None)
                actions = getattr(entry.callback, "actions", None) or {}
                route = prefix + str(entry.pattern)
                listed = actions.get("get") == "list" and "<" not in route and "(?P" not in route
                serializer = (
                    getattr(view, "serializer_class", None) if listed and issubclass(view, VisibleViewSet) else None
                )
                if serializer is not None and list_representation(serializer) is not None:
                    found.append("/" + route.replace("^", "").replace("$", ""))

    walk(get_resolver().url_patterns, "")
    return sorted(set(found))


def test_every_compiled_list_gives_what_drf_gives(api, org, rep_records, pipeline, settings, monkeypatch):
    """The lists `list_representation` answers (deals, leads, organizations, contacts, activities, ...) give, for
    records with every field filled and with empty ones, the JSON that DRF's serializers give, in two time zones."""
    import config.api
    from pipeline.webhooks.models import EventType
    from pipeline.webhooks.services import emit_event

    services.create_organization(actor=org.rep, name="Empty fields", industry="")
    make_deal(
        owner=org.rep, pipeline=pipeline, title="Full", amount=Decimal("12500.5"), expected_close_date="2027-01-31"
    )
    make_deal(owner=org.teammate, pipeline=pipeline, title="No amount, no date")
    make_lost_reason("Price")
    emit_event(type=EventType.DEAL_CREATED, data=lambda: {"id": rep_records.deal.pk}, record_owners=[org.rep.pk])
    routes = compiled_lists()
    assert {"/api/v1/deals/", "/api/v1/leads/", "/api/v1/organizations/", "/api/v1/contacts/"} <= set(routes)
    admin = api("admin")
    for zone in ("UTC", "America/New_York"):
        settings.TIME_ZONE = zone
        for route in routes:
            fast = admin.get(route, {"page_size": 200})
            with monkeypatch.context() as patched:
                patched.setattr(config.api, "list_representation", lambda serializer_class: None)
                slow = admin.get(route, {"page_size": 200})
            assert fast.status_code == slow.status_code == 200, route
            assert fast.json() == slow.json(), route
            assert fast.json()["results"], f"{route} listed nothing: the comparison would prove nothing"


def test_a_filterset_builds_its_form_class_once_and_each_request_validates_its_own_input():
    # The form class is shared by every request (`config.rest.FilterSet`); the fields and what they hold are not.
    refused = DealFilter(QueryDict("pipeline=x&amount_min=5"), queryset=Deal.objects.none())
    accepted = DealFilter(QueryDict("pipeline=3"), queryset=Deal.objects.none())
    assert type(refused.form) is type(accepted.form)
    assert refused.form.fields["pipeline"] is not accepted.form.fields["pipeline"]
    assert not refused.is_valid() and set(refused.errors) == {"pipeline"}
    assert accepted.is_valid()
    assert accepted.form.cleaned_data["pipeline"] == 3 and accepted.form.cleaned_data["amount_min"] is None


def test_each_filterset_has_its_own_filters_and_the_classes_own_stay_untouched():
    # The filters are copied per filterset, not deep-copied (`config.rest.FilterSet`): what one filterset sets on
    # its filters (its model, itself, the fields they make) is never another's, nor the class's.
    first = DealFilter(QueryDict("stage=4"), queryset=Deal.objects.all())
    second = DealFilter(QueryDict("stage=5"), queryset=Deal.objects.all())
    assert set(first.filters) == set(DealFilter.base_filters)
    for name, filter_ in first.filters.items():
        assert filter_ is not second.filters[name] and filter_ is not DealFilter.base_filters[name]
        assert filter_.parent is first and second.filters[name].parent is second
        assert getattr(DealFilter.base_filters[name], "parent", None) is None
    assert first.filters["stage"].field is not second.filters["stage"].field
    assert first.filters["stale"].filter.f is first.filters["stale"]  # a method filter finds its own filterset
    assert 'WHERE "pipeline_deal"."stage_id" = 4 ORDER' in str(first.qs.query)
    assert 'WHERE "pipeline_deal"."stage_id" = 5 ORDER' in str(second.qs.query)
