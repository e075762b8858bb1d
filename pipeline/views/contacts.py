"""Contacts (/contacts/): the searched list, a new contact, and a contact's page: their organization, the deals they
are the contact of (open and closed, with totals), the activities on them, and a timeline; editing them."""

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
from pipeline.forms import ContactForm, CustomerFilterForm
from pipeline.models import Contact
from pipeline.views.organizations import PAGE_SIZE
from pipeline.views.responses import is_htmx


@login_required
@require_GET
def contact_list(request: HttpRequest) -> HttpResponse:
    """Contacts the user may see, searched by name or email; 50 a page."""
    filter_form = CustomerFilterForm(request.GET or None, placeholder="Search by name or email")
    contacts = selectors.contact_list(user=request.user, text=filter_form.text())
    page = Paginator(contacts, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filter_form": filter_form, "page": page, "query": query.urlencode()}
    if is_htmx(request) and request.headers.get("HX-Target") == "contact-results":
        return render(request, "pipeline/partials/contact_results.html", context)
    return render(request, "pipeline/contact_list.html", context)


@login_required
def contact_create(request: HttpRequest) -> HttpResponse:
    """A new contact, through `services.create_contact` (at the organization of `?organization=` when it is one
    the user may see); then their page."""
    initial = {}
    organization_id = request.GET.get("organization", "")
    if organization_id.isdigit():
        initial["organization"] = (
            selectors.visible_organizations(request.user)
            .filter(pk=organization_id)
            .values_list("pk", flat=True)
            .first()
        )
    form = ContactForm(request.POST or None, user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            contact = services.create_contact(actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Created the contact {contact}.")
            return redirect("pipeline:contact", pk=contact.pk)
    return render(request, "pipeline/customer_form.html", {"form": form, "kind": "contact"})


@login_required
@require_GET
def contact_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A contact: their organization, their deals open and closed with totals, activities and timeline."""
    contacts = selectors.visible_contacts(request.user).select_related("owner", "organization")
    contact = get_object_or_404(selectors.with_organization_shown(user=request.user, contacts=contacts), pk=pk)
    context = {
        "contact": contact,
        "record": selectors.contact_record(user=request.user, contact=contact),
        "can_edit": selectors.editable_contacts(request.user).filter(pk=contact.pk).exists(),
        "now": timezone.now(),
    }
    return render(request, "pipeline/contact_detail.html", context)


@login_required
def contact_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a contact the user may edit, through `services.update_contact`."""
    contact: Contact = get_object_or_404(selectors.editable_contacts(request.user), pk=pk)
    form = ContactForm(request.POST or None, user=request.user, initial=ContactForm.initial_for(contact))
    if (
        contact.organization_id
        and not selectors.visible_organizations(request.user).filter(pk=contact.organization_id).exists()
    ):
        # The contact works at an organization the user may not see: it is neither named nor offered, and a save
        # leaves it as it is (an empty choice would silently take the contact away from it).
        del form.fields["organization"]
    if request.method == "POST" and form.is_valid():
        try:
            services.update_contact(contact=contact, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, "Saved.")
            return redirect("pipeline:contact", pk=contact.pk)
    return render(request, "pipeline/customer_form.html", {"form": form, "kind": "contact", "record": contact})
