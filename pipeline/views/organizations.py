"""Organizations (/organizations/): the searched list, a new organization, and an organization's page: its deals
open and closed with their totals, its contacts, the activities on its deals and leads, and a timeline; editing it."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from config.forms import add_service_errors
from pipeline import selectors, services
from pipeline.forms import CustomerFilterForm, OrganizationForm
from pipeline.models import Organization
from pipeline.views.responses import is_htmx

# Rows a page of the list shows.
PAGE_SIZE = 50


@login_required
@require_GET
def organization_list(request: HttpRequest) -> HttpResponse:
    """Organizations the user may see, searched by name; 50 a page, with their open deals' count and amount."""
    filter_form = CustomerFilterForm(request.GET or None, placeholder="Search organizations")
    organizations = selectors.organization_list(user=request.user, text=filter_form.text())
    page = Paginator(organizations, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filter_form": filter_form, "page": page, "query": query.urlencode()}
    if is_htmx(request) and request.headers.get("HX-Target") == "organization-results":
        return render(request, "pipeline/partials/organization_results.html", context)
    return render(request, "pipeline/organization_list.html", context)


@login_required
def organization_create(request: HttpRequest) -> HttpResponse:
    """A new organization, through `services.create_organization`; then its page."""
    form = OrganizationForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            organization = services.create_organization(actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Created the organization {organization}.")
            return redirect("pipeline:organization", pk=organization.pk)
    return render(request, "pipeline/customer_form.html", {"form": form, "kind": "organization"})


@login_required
@require_GET
def organization_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """An organization: its deals open and closed with totals, its contacts, activities and timeline."""
    organization = get_object_or_404(selectors.visible_organizations(request.user).select_related("owner"), pk=pk)
    context = {
        "organization": organization,
        "record": selectors.organization_record(user=request.user, organization=organization),
        "contacts": list(
            selectors.organization_contacts(user=request.user, organization=organization).select_related("owner")
        ),
        "can_edit": selectors.editable_organizations(request.user).filter(pk=organization.pk).exists(),
        "now": timezone.now(),
    }
    return render(request, "pipeline/organization_detail.html", context)


@login_required
def organization_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change an organization the user may edit, through `services.update_organization`."""
    organization: Organization = get_object_or_404(selectors.editable_organizations(request.user), pk=pk)
    form = OrganizationForm(request.POST or None, user=request.user, initial=OrganizationForm.initial_for(organization))
    if request.method == "POST" and form.is_valid():
        try:
            services.update_organization(organization=organization, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, "Saved.")
            return redirect("pipeline:organization", pk=organization.pk)
    return render(
        request, "pipeline/customer_form.html", {"form": form, "kind": "organization", "record": organization}
    )
