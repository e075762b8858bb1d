"""Forms of the browser pages: they parse and validate input; the writing is done by `pipeline.services`.

None of them is a ModelForm: a ModelForm would validate and change the model instance itself, while the services
own every rule about deals and leads; `config.forms.add_service_errors` puts their per-field errors on a form.
"""

import functools
from collections.abc import Callable
from datetime import UTC, datetime

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.models import fields_for_model
from django.utils.choices import BaseChoiceIterator

from accounts.models import User
from accounts.selectors import assignable_owners, visible_users
from config.forms import (
    PlainCheckboxes,
    PlainDateInput,
    PlainHiddenInput,
    PlainNumberInput,
    PlainSelect,
    PlainTextInput,
)
from pipeline.models import (
    REQUIRABLE_DEAL_FIELDS,
    ActivityKind,
    Contact,
    Deal,
    DealStatus,
    ForecastCategory,
    ImportKind,
    Lead,
    LeadStatus,
    LostReason,
    Organization,
    Stage,
    StageKind,
)
from pipeline.pick_lists import PickLists
from pipeline.selectors import (
    DEAL_TABLE_COLUMNS,
    DEAL_TABLE_SORTS,
    DEFAULT_DEAL_TABLE_COLUMNS,
    DEFAULT_DEAL_TABLE_SORT,
    DealColumn,
    filterable_teams,
    visible_contacts,
    visible_lost_reasons,
    visible_organizations,
    visible_pipelines,
    visible_stages,
)
from pipeline.services import DEAL_EDITABLE_FIELDS

DATETIME_LOCAL = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
DATE_INPUT = PlainDateInput(attrs={"type": "date"}, format="%Y-%m-%d")


def _form_field(model_field: models.Field, **kwargs) -> forms.Field:
    # A website typed without its scheme is taken as https (Django 6's default; said now, it also warns no more).
    if isinstance(model_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return model_field.formfield(**kwargs)


def _model_fields(model, names: list[str], widgets: dict | None = None) -> dict[str, forms.Field]:
    """Form fields for `names` of `model`, with the model field's own validators (e.g. amount ≥ 0) so that the
    form reports every bad field at once instead of the service stopping at the first."""
    fields = fields_for_model(model, fields=names, widgets=widgets, formfield_callback=_form_field)
    for name, field in fields.items():
        extra = [v for v in model._meta.get_field(name).validators if v not in field.validators]
        field.validators.extend(extra)
    return fields


def _limit_people_and_companies(form: forms.Form, user: User) -> None:
    """Offer only the organizations, contacts and owners the user may see."""
    if "organization" in form.fields:
        form.fields["organization"].queryset = visible_organizations(user).order_by("name")
        form.fields["organization"].empty_label = "No organization"
    if "contact" in form.fields:
        form.fields["contact"].queryset = visible_contacts(user).order_by("last_name", "first_name")
        form.fields["contact"].empty_label = "No contact"
    if "owner" in form.fields:
        form.fields["owner"].queryset = assignable_owners(user)


class BoardFilterForm(forms.Form):
    owner = forms.ModelChoiceField(queryset=User.objects.none(), required=False, empty_label="Everyone")
    team = forms.ModelChoiceField(queryset=User.objects.none(), required=False, empty_label="All teams")
    q = forms.CharField(required=False, max_length=100, label="Search")

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = visible_users(user).filter(is_active=True).order_by("username")
        self.fields["team"].queryset = filterable_teams(user)
        self.fields["q"].widget.attrs.update(placeholder="Search deals, organizations or contacts")
        self.fields["q"].widget.input_type = "search"

    def filters(self) -> dict:
        """The valid filters as keyword arguments of `board_deals`; an invalid value filters nothing."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {"owner": data.get("owner"), "team": data.get("team"), "text": data.get("q") or ""}


def _offer(field: forms.ChoiceField, empty: str | None, read: Callable[[], list[tuple]]) -> None:
    """Give `field` the options `read()` returns (`empty` first), read when the field is first rendered or validated
    (a rep's table shows no owner filter). From a page's `PickLists`, not from a model instance an option: the deal
    table showed its 200 users twice (filters and bulk form), 20 ms of an admin's page."""
    first = [] if empty is None else [("", empty)]
    field.choices = _Options(lambda: [*first, *read()])


class _Options(BaseChoiceIterator):
    """Options read once, when first iterated, and iterated as they are: a callable's choices are read and normalized
    again on every iteration (a select iterates them twice: for its `required` attribute, then to write them)."""

    def __init__(self, read: Callable[[], list[tuple]]):
        self.read = functools.cache(read)

    def __iter__(self):
        return iter(self.read())


# The deal table's pick lists (`PickLists`), each a function of the user it is offered to.
def _pipelines(user: User):
    return visible_pipelines(user).values_list("pk", "name")


def _stages(user: User):
    return visible_stages(user).order_by("pipeline__name", "order").values_list("pk", "pipeline__name", "name")


def _stage_label(pipeline: str, name: str) -> str:
    return f"{pipeline} · {name}"


def _people(users: models.QuerySet):
    return users.order_by("username").values_list("pk", "first_name", "last_name", "username")


def _owners(user: User):
    return _people(visible_users(user).filter(is_active=True))


def _assignable_owners(user: User):
    return _people(assignable_owners(user))


def _teams(user: User):
    return filterable_teams(user).values_list("pk", "name")


def _active_lost_reasons(user: User):
    return visible_lost_reasons(user).filter(is_active=True).values_list("pk", "name")


class DealTableForm(forms.Form):
    """The deal table's filters, sort and columns, for showing them: the filtering itself is the API list's
    (`pipeline.api.filters.DealFilter`, the same parameter names) and the search `selectors.search_deals`."""

    q = forms.CharField(required=False, max_length=100, label="Search", widget=PlainTextInput)
    # Ids among the options offered: the filtering itself is `DealFilter`'s, so no queryset is needed to validate.
    pipeline = forms.TypedChoiceField(coerce=int, required=False, label="Pipeline", widget=PlainSelect)
    stage = forms.TypedChoiceField(coerce=int, required=False, label="Stage", widget=PlainSelect)
    status = forms.ChoiceField(
        choices=[("", "Any status"), *DealStatus.choices], required=False, label="Status", widget=PlainSelect
    )
    owner = forms.TypedChoiceField(coerce=int, required=False, label="Owner", widget=PlainSelect)
    team = forms.TypedChoiceField(coerce=int, required=False, label="Team", widget=PlainSelect)
    amount_min = forms.DecimalField(required=False, min_value=0, label="Amount from", widget=PlainNumberInput)
    amount_max = forms.DecimalField(required=False, min_value=0, label="Amount to", widget=PlainNumberInput)
    expected_close_after = forms.DateField(required=False, widget=DATE_INPUT, label="Closing from")
    expected_close_before = forms.DateField(required=False, widget=DATE_INPUT, label="Closing to")
    sort = forms.ChoiceField(required=False, label="Sort by", widget=PlainSelect)
    col = forms.MultipleChoiceField(required=False, widget=PlainCheckboxes, label="Columns")

    def __init__(self, data=None, *args, user: User, pick_lists: PickLists | None = None, **kwargs):
        if data is not None and not data.getlist("col"):
            # No columns chosen is the default ones, shown ticked in the chooser.
            data = data.copy()
            data.setlist("col", list(DEFAULT_DEAL_TABLE_COLUMNS[1:]))
        super().__init__(data, *args, **kwargs)
        pick_lists = pick_lists or PickLists(user)
        _offer(self.fields["pipeline"], "All pipelines", lambda: pick_lists.options(_pipelines))
        _offer(self.fields["stage"], "All stages", lambda: pick_lists.options(_stages, _stage_label))
        _offer(self.fields["owner"], "Everyone", lambda: pick_lists.options(_owners, User.name_of))
        _offer(self.fields["team"], "All teams", lambda: pick_lists.options(_teams))
        self.fields["q"].widget.attrs.update(placeholder="Search deals, organizations or contacts")
        self.fields["q"].widget.input_type = "search"
        self.fields["sort"].choices = [
            (f"{sign}{key}", f"{DEAL_TABLE_COLUMNS[key].label} {arrow}")
            for key in DEAL_TABLE_SORTS
            for sign, arrow in (("-", "↓"), ("", "↑"))
        ]
        self.fields["col"].choices = [
            (key, column.label) for key, column in DEAL_TABLE_COLUMNS.items() if key != "title"
        ]

    def ordering(self) -> str:
        """The chosen order (`-amount`, …), the default when none or an unknown one is asked."""
        self.is_valid()
        return getattr(self, "cleaned_data", {}).get("sort") or DEFAULT_DEAL_TABLE_SORT

    def chosen_columns(self) -> list[DealColumn]:
        """The chosen columns, the title first; the default ones when none are chosen."""
        self.is_valid()
        keys = getattr(self, "cleaned_data", {}).get("col") or DEFAULT_DEAL_TABLE_COLUMNS
        return [
            DEAL_TABLE_COLUMNS["title"],
            *(DEAL_TABLE_COLUMNS[key] for key in DEAL_TABLE_COLUMNS if key in keys and key != "title"),
        ]

    def text(self) -> str:
        self.is_valid()
        return getattr(self, "cleaned_data", {}).get("q") or ""


class BulkDealForm(forms.Form):
    """One change for the deals ticked in the table: a new owner, a stage (with a lost reason to lose), or an
    expected close date."""

    ACTIONS = [("owner", "Change owner"), ("stage", "Move to stage"), ("close_date", "Set close date")]

    deal = forms.TypedMultipleChoiceField(
        coerce=int, label="Deals", error_messages={"required": "Tick the deals to change first."}
    )
    action = forms.ChoiceField(choices=ACTIONS, widget=PlainSelect)
    # Their ids are the table page's own: the filters above it have an owner and a stage too.
    owner = forms.ModelChoiceField(
        queryset=User.objects.none(),
        required=False,
        empty_label="Choose an owner…",
        widget=PlainSelect(attrs={"id": "id_bulk_owner"}),
    )
    stage = forms.ModelChoiceField(
        queryset=Stage.objects.none(),
        required=False,
        empty_label="Choose a stage…",
        widget=PlainSelect(attrs={"id": "id_bulk_stage"}),
    )
    lost_reason = forms.ModelChoiceField(
        queryset=LostReason.objects.filter(is_active=True),
        required=False,
        empty_label="Lost reason (to lose)…",
        widget=PlainSelect(attrs={"id": "id_bulk_lost_reason"}),
    )
    expected_close_date = forms.DateField(required=False, widget=DATE_INPUT, label="Close date")

    def __init__(self, *args, user: User, pick_lists: PickLists | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.is_bound:  # what a change may name; an unbound form only shows the options
            self.fields["owner"].queryset = assignable_owners(user)
            self.fields["stage"].queryset = visible_stages(user)
        pick_lists = pick_lists or PickLists(user)
        owner, stage, lost_reason = (self.fields[name] for name in ("owner", "stage", "lost_reason"))
        _offer(owner, owner.empty_label, lambda: pick_lists.options(_assignable_owners, User.name_of))
        _offer(stage, stage.empty_label, lambda: pick_lists.options(_stages, _stage_label))
        _offer(lost_reason, lost_reason.empty_label, lambda: pick_lists.options(_active_lost_reasons))
        # Any id is accepted here: the view changes only those among the deals the user may edit.
        self.fields["deal"].valid_value = lambda value: True

    def clean(self):
        data = super().clean()
        needed = {"owner": "owner", "stage": "stage", "close_date": "expected_close_date"}.get(data.get("action"))
        if needed and not data.get(needed):
            self.add_error(needed, "Choose the new value.")
        return data

    def change(self) -> dict:
        """The keyword arguments of `services.bulk_change_deals` for the chosen action."""
        data = self.cleaned_data
        if data["action"] == "owner":
            return {"owner": data["owner"]}
        if data["action"] == "stage":
            return {"stage": data["stage"], "lost_reason": data["lost_reason"]}
        return {"expected_close_date": data["expected_close_date"]}


class SavedDealViewForm(forms.Form):
    name = forms.CharField(
        max_length=80, label="View name", widget=PlainTextInput(attrs={"placeholder": "Name this view"})
    )
    query = forms.CharField(required=False, max_length=2000, widget=PlainHiddenInput)


class MoveForm(forms.Form):
    """Where a deal goes: a stage of its pipeline, and the version the user saw."""

    stage = forms.ModelChoiceField(
        queryset=Stage.objects.none(), error_messages={"invalid_choice": "Choose a stage of this deal's pipeline."}
    )
    version = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, deal: Deal, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["stage"].queryset = deal.pipeline.stages.all()


class StageEntryForm(forms.Form):
    """Exactly what entering a stage still needs: its missing required fields, and a lost reason to lose."""

    def __init__(self, *args, deal: Deal, stage: Stage, missing: list[str], user: User, **kwargs):
        super().__init__(*args, **kwargs)
        model_fields = _model_fields(Deal, missing, {"expected_close_date": DATE_INPUT})
        for name in missing:
            field = model_fields[name]
            field.required = True
            field.label = REQUIRABLE_DEAL_FIELDS.get(name, field.label)
            self.fields[name] = field
        _limit_people_and_companies(self, user)
        if "contact" in self.fields and deal.organization_id:
            self.fields["contact"].queryset = self.fields["contact"].queryset.filter(organization=deal.organization_id)
        if stage.kind == StageKind.LOST:
            self.fields["lost_reason"] = forms.ModelChoiceField(
                queryset=LostReason.objects.filter(is_active=True), label="Lost reason", empty_label="Choose a reason…"
            )
            self.fields["lost_note"] = forms.CharField(
                required=False, label="Note (optional)", widget=forms.Textarea(attrs={"rows": 2})
            )

    def service_arguments(self) -> dict:
        """`fields=` and `lost_reason=` for `services.move_deal`."""
        data = dict(self.cleaned_data)
        lost_reason = data.pop("lost_reason", None)
        if not data.get("lost_note"):
            data.pop("lost_note", None)
        return {"fields": data, "lost_reason": lost_reason}


# The deal page edits what the services let a caller edit, except the integration's id (the API and imports set
# it) and the note on a lost deal (asked for when the deal is lost).
DEAL_FORM_FIELDS = [name for name in DEAL_EDITABLE_FIELDS if name not in ("external_id", "lost_note")]


class DealFieldsForm(forms.Form):
    """The editable fields of a deal (not its stage: that is a move).

    Beside each field a hidden `seen_<name>` keeps the value the user was shown, so that when someone else saved the
    deal meanwhile (`rebased`) the fields the user changed are told from those the other person changed.
    """

    version = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        model_fields = _model_fields(
            Deal, DEAL_FORM_FIELDS, {"expected_close_date": DATE_INPUT, "need": forms.Textarea(attrs={"rows": 2})}
        )
        for name in DEAL_FORM_FIELDS:
            self.fields[name] = model_fields[name]
        for name in DEAL_FORM_FIELDS:
            self.fields[f"seen_{name}"] = forms.CharField(required=False, strip=False, widget=forms.HiddenInput)
        self.fields["forecast_category_override"].label = "Forecast category"
        self.fields["forecast_category_override"].choices = [("", "The stage's default"), *ForecastCategory.choices]
        self.fields["owner"].empty_label = None
        _limit_people_and_companies(self, user)
        self.user = user

    @classmethod
    def initial_for(cls, deal: Deal) -> dict:
        initial = {name: getattr(deal, name) for name in DEAL_FORM_FIELDS}
        for name in ("owner", "organization", "contact"):
            initial[name] = getattr(deal, f"{name}_id")
        initial.update({f"seen_{name}": as_input(initial[name]) for name in DEAL_FORM_FIELDS})
        initial["version"] = deal.version
        return initial

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in DEAL_FORM_FIELDS}

    def rebased(self, deal: Deal) -> tuple["DealFieldsForm", list[str]]:
        """This valid form, refused because `deal` was saved by someone else meanwhile, moved onto its latest version.

        A field only the other person changed takes their value; a field only the user changed keeps what they typed;
        a field both changed to different values keeps the user's and is named in the returned list (the caller says
        at the field what it holds now). Saving the returned form applies the user's values over the latest version.
        """
        current = self.initial_for(deal)
        data = self.data.copy()
        data["version"] = str(deal.version)
        conflicts = []
        for name in DEAL_FORM_FIELDS:
            field, typed, seen = self.fields[name], self.cleaned_data[name], self.cleaned_data[f"seen_{name}"]
            theirs_changed = not same_value(field, current[name], seen)
            if theirs_changed and same_value(field, typed, seen):
                data[name] = as_input(current[name])
            elif theirs_changed and not same_value(field, typed, current[name]):
                conflicts.append(name)
            data[f"seen_{name}"] = as_input(current[name])
        form = type(self)(data, user=self.user)
        form.is_valid()
        return form, conflicts


def as_input(value) -> str:
    """A value as a form input carries it: a record by its id, a date in ISO form, nothing as an empty string."""
    if value is None:
        return ""
    if hasattr(value, "pk"):
        return str(value.pk)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def same_value(field: forms.Field, one, other) -> bool:
    """Whether two values of a form field mean the same, whatever form they come in (ids, text, objects)."""
    try:
        return field.to_python(as_input(one)) == field.to_python(as_input(other))
    except ValidationError:
        return as_input(one) == as_input(other)


NEW_DEAL_FIELDS = ["title", "owner", "organization", "contact", "amount", "currency", "expected_close_date", "source"]


class DealCreateForm(forms.Form):
    """A new deal in a stage of one pipeline (its first open stage unless another is chosen)."""

    stage = forms.ModelChoiceField(queryset=Stage.objects.none(), empty_label=None)

    def __init__(self, *args, user: User, pipeline, **kwargs):
        super().__init__(*args, **kwargs)
        model_fields = _model_fields(Deal, NEW_DEAL_FIELDS, {"expected_close_date": DATE_INPUT})
        for name in NEW_DEAL_FIELDS:
            self.fields[name] = model_fields[name]
        self.fields["stage"] = self.fields.pop("stage")
        self.fields["stage"].queryset = pipeline.stages.filter(kind=StageKind.OPEN).order_by("order")
        self.fields["owner"].empty_label = None
        self.fields["owner"].required = True
        self.fields["currency"].initial = settings.DEFAULT_CURRENCY
        self.initial.setdefault("owner", user.pk)
        _limit_people_and_companies(self, user)

    def service_arguments(self) -> dict:
        """Keyword arguments of `services.create_deal`; fields left empty keep the model's defaults."""
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}


QUICK_DEAL_FIELDS = ["title", "amount", "organization"]


class QuickDealForm(forms.Form):
    """The board's quick add at the top of a column: a title, an amount and, if any, an organization. The deal is the
    user's, in the column's stage and the default currency; a field the stage requires that this form lacks (a close
    date, a contact) is refused above the form by the service, and the full form asks for it."""

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields.update(_model_fields(Deal, QUICK_DEAL_FIELDS))
        self.fields["title"].widget.attrs.update(placeholder="Deal title")
        self.fields["amount"].widget.attrs.update(placeholder="Amount", inputmode="decimal")
        _limit_people_and_companies(self, user)

    def service_arguments(self) -> dict:
        """Keyword arguments of `services.create_deal`; fields left empty keep the model's defaults."""
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}


NEW_LEAD_FIELDS = ["first_name", "last_name", "email", "phone", "company", "job_title", "source", "owner"]


class LeadCreateForm(forms.Form):
    """A new lead, owned by the user unless they pick someone they manage."""

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        model_fields = _model_fields(Lead, NEW_LEAD_FIELDS)
        for name in NEW_LEAD_FIELDS:
            self.fields[name] = model_fields[name]
        self.fields["owner"].empty_label = None
        self.initial.setdefault("owner", user.pk)
        _limit_people_and_companies(self, user)


ORGANIZATION_FORM_FIELDS = ["name", "website", "industry", "owner"]
CONTACT_FORM_FIELDS = ["first_name", "last_name", "job_title", "email", "phone", "organization", "owner"]


class CustomerForm(forms.Form):
    """An organization's or a contact's fields, for `services.create_*` and `update_*`: owned by the user unless
    they pick someone whose records they may change."""

    model: type
    field_names: list[str]

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        model_fields = _model_fields(self.model, self.field_names)
        for name in self.field_names:
            self.fields[name] = model_fields[name]
        # Someone must own it: an owner-less record is one only an admin may change.
        self.fields["owner"].required = True
        self.fields["owner"].empty_label = None
        self.initial.setdefault("owner", user.pk)
        _limit_people_and_companies(self, user)

    @classmethod
    def initial_for(cls, record) -> dict:
        return {name: getattr(record, cls.model._meta.get_field(name).attname) for name in cls.field_names}


class OrganizationForm(CustomerForm):
    model = Organization
    field_names = ORGANIZATION_FORM_FIELDS


class ContactForm(CustomerForm):
    model = Contact
    field_names = CONTACT_FORM_FIELDS


class CustomerFilterForm(forms.Form):
    """The search of the organization and contact lists."""

    q = forms.CharField(required=False, max_length=100, label="Search")

    def __init__(self, *args, placeholder: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["q"].widget.attrs.update(placeholder=placeholder)
        self.fields["q"].widget.input_type = "search"

    def text(self) -> str:
        """The text to search for; one that does not parse searches nothing."""
        return self.cleaned_data["q"] if self.is_valid() else ""


class ActivityForm(forms.Form):
    """Log what happened, or plan a next step by giving it a due time."""

    kind = forms.ChoiceField(choices=ActivityKind.choices, label="Type")
    subject = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"placeholder": "Subject"}))
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Notes (optional)"}))
    due_at = forms.DateTimeField(
        required=False, widget=DATETIME_LOCAL, label="Due", help_text="Leave empty to log it as done now."
    )

    def clean_due_at(self) -> datetime | None:
        due_at = self.cleaned_data["due_at"]
        if due_at is not None:
            try:
                # A time sent with an offset is kept as sent; in UTC it may fall in year 10000, which PostgreSQL
                # would store and no read of the row could then return.
                due_at.astimezone(UTC)
            except OverflowError:
                raise ValidationError("The time is out of range.") from None
        return due_at


class InboxFilterForm(forms.Form):
    owner = forms.ModelChoiceField(queryset=User.objects.none(), required=False, empty_label="Mine")

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = visible_users(user).filter(is_active=True).order_by("username")

    def chosen_owner(self) -> User | None:
        return self.cleaned_data.get("owner") if self.is_valid() else None


class LeadFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *LeadStatus.choices], required=False)
    owner = forms.ModelChoiceField(queryset=User.objects.none(), required=False, empty_label="Any owner")
    source = forms.CharField(required=False, max_length=100)
    q = forms.CharField(required=False, max_length=100, label="Search")

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = visible_users(user).filter(is_active=True).order_by("username")
        self.fields["q"].widget.attrs.update(placeholder="Name, company or email")
        self.fields["q"].widget.input_type = "search"
        self.fields["source"].widget.attrs.update(placeholder="Source", list="lead-sources")

    def filters(self) -> dict:
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            "status": data.get("status") or "",
            "owner": data.get("owner"),
            "source": data.get("source") or "",
            "text": data.get("q") or "",
        }


LEAD_BANT_FIELDS = ["budget", "authority", "need", "timeline", "score", "source"]


class LeadQualificationForm(forms.Form):
    """BANT answers, score and source of a lead."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        model_fields = _model_fields(Lead, LEAD_BANT_FIELDS, {"need": forms.Textarea(attrs={"rows": 2})})
        for name in LEAD_BANT_FIELDS:
            self.fields[name] = model_fields[name]

    @classmethod
    def initial_for(cls, lead: Lead) -> dict:
        return {name: getattr(lead, name) for name in LEAD_BANT_FIELDS}


class LeadStatusForm(forms.Form):
    status = forms.ChoiceField(choices=[c for c in LeadStatus.choices if c[0] != LeadStatus.CONVERTED])
    reason = forms.CharField(required=False, max_length=200, label="Reason (when disqualifying)")


class ConvertLeadForm(forms.Form):
    title = forms.CharField(max_length=200, required=False, help_text="Defaults to the company name.")
    pipeline = forms.ModelChoiceField(queryset=Stage.objects.none(), required=False, empty_label="Default pipeline")
    amount = forms.DecimalField(max_digits=14, decimal_places=2, min_value=0, required=False)
    expected_close_date = forms.DateField(required=False, widget=DATE_INPUT)

    def __init__(self, data=None, *args, user: User, **kwargs):
        super().__init__(data, *args, **kwargs)
        self.fields["pipeline"].queryset = visible_pipelines(user)

    def service_arguments(self) -> dict:
        data = self.cleaned_data
        arguments = {"title": data["title"], "pipeline": data["pipeline"]}
        for name in ("amount", "expected_close_date"):
            if data[name] is not None:
                arguments[name] = data[name]
        return arguments


# --- CSV import ----------------------------------------------------------------------------------------------------


class ImportUploadForm(forms.Form):
    file = forms.FileField(label="CSV file")
    kind = forms.ChoiceField(choices=ImportKind.choices, label="What the file holds")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_FILE_SIZE:
            raise ValidationError(
                f"The file is larger than the {settings.IMPORT_MAX_FILE_SIZE:,} bytes an import accepts."
            )
        return upload


class ImportMappingForm(forms.Form):
    """A field for each column of the file (`column_<i>`), the value mapping of stages and owners the file names
    that are not ours (`value_<field>_<i>`), and the options. `mapping()`, `value_map()` and `options()` read it."""

    date_order = forms.ChoiceField(
        choices=[("", "ISO dates only (refuse 03/04/2026)"), ("dmy", "day/month/year"), ("mdy", "month/day/year")],
        required=False,
        label="Dates like 03/04/2026 are",
    )
    create_missing = forms.BooleanField(
        required=False, label="Create organizations, contacts and lost reasons the file names but this CRM lacks"
    )

    def __init__(
        self,
        *args,
        header: list[str],
        fields: list[str],
        unknown_values: dict[str, list[str]],
        value_choices: dict[str, list[str]],
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.header = header
        choices = [("", "— ignore this column —")] + [(name, name) for name in fields]
        for index, column in enumerate(header):
            self.fields[f"column_{index}"] = forms.ChoiceField(
                choices=choices, required=False, label=column or "(blank)"
            )
        self.value_rows: list[tuple[str, str, str]] = []  # (field, their value, form field name)
        for field, values in unknown_values.items():
            ours = [("", "— as written —")] + [(value, value) for value in value_choices.get(field, [])]
            for index, value in enumerate(values):
                name = f"value_{field}_{index}"
                self.fields[name] = forms.ChoiceField(choices=ours, required=False, label=value)
                self.value_rows.append((field, value, name))

    def column_fields(self):
        return [self[f"column_{index}"] for index in range(len(self.header))]

    def value_fields(self):
        return [(field, value, self[name]) for field, value, name in self.value_rows]

    def clean(self):
        data = super().clean()
        mapped = [data.get(f"column_{index}") for index in range(len(self.header))]
        mapped = [field for field in mapped if field]
        for field in sorted({field for field in mapped if mapped.count(field) > 1}):
            self.add_error(None, f"Two columns are mapped to “{field}”: choose one.")
        return data

    def mapping(self) -> dict[str, str]:
        return {
            column: self.cleaned_data.get(f"column_{index}") or "" for index, column in enumerate(self.header) if column
        }

    def value_map(self) -> dict[str, dict[str, str]]:
        value_map: dict[str, dict[str, str]] = {}
        for field, value, name in self.value_rows:
            if self.cleaned_data.get(name):
                value_map.setdefault(field, {})[value] = self.cleaned_data[name]
        return value_map
