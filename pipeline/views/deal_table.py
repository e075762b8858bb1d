"""The deal table (/deals/): the visible deals filtered like the API list (`DealFilter`) and searched like the
board (`selectors.search_deals`), sorted by an indexed key and walked by cursor like the API (`ApiPagination`),
with a column chooser, saved views, a CSV export of exactly the rows and columns shown, and bulk changes."""

from html import escape
from urllib.parse import urlencode, urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_POST
from rest_framework import exceptions

from config.rest import ApiPagination
from pipeline import selectors, services
from pipeline.api.exports import csv_download
from pipeline.api.filters import DealFilter
from pipeline.exporting import csv_cell
from pipeline.forms import BulkDealForm, DealTableForm, SavedDealViewForm
from pipeline.pick_lists import PickLists
from pipeline.templatetags.crm import money, url_of
from pipeline.views.responses import first_error, is_htmx, sees_others

# The parameters a table's address may carry, and so a saved view keeps (the cursor is a place, not a view).
TABLE_PARAMETERS = (
    "q",
    "pipeline",
    "stage",
    "status",
    "owner",
    "team",
    "amount_min",
    "amount_max",
    "expected_close_after",
    "expected_close_before",
    "organization",
    "contact",
    "source",
    "closed_after",
    "closed_before",
    "created_after",
    "created_before",
    "forecast_category",
    "reached_stage",
    "stale",
    "sort",
    "col",
    "page_size",
)


# The filters the dashboard's drill-down links set and the filter bar has no control for: kept as hidden fields (so
# changing another filter keeps them) and named above the table, so a reader sees why it holds what it holds.
DRILL_DOWN_PARAMETERS = {
    "closed_after": "closed from",
    "closed_before": "closed before",
    "created_after": "created from",
    "created_before": "created before",
    "forecast_category": "forecast category",
    "reached_stage": "reached stage",
    "stale": "stale",
}


def view_query(params: QueryDict) -> str:
    """The table's own parameters of `params`, as a query string (what a saved view stores)."""
    kept = QueryDict(mutable=True)
    for name in TABLE_PARAMETERS:
        values = [value for value in params.getlist(name) if value != ""]
        if values:
            kept.setlist(name, values)
    return kept.urlencode()


def _matching_deals(user, params: QueryDict, visible=None, pick_lists: PickLists | None = None):
    """The deals of `visible` (default: those `user` may see) that the table's parameters select, in its order."""
    form = DealTableForm(params, user=user, pick_lists=pick_lists)
    terms = selectors.search_terms(form.text())
    if visible is None:
        visible = selectors.visible_deals(user, searched=bool(terms), pick_lists=pick_lists)
    filterset = DealFilter(params, queryset=visible)
    deals = selectors.search_deals(filterset.qs, terms)
    ordering = selectors.deal_table_ordering(form.ordering())
    return form, filterset, deals.order_by(*ordering), ordering


def _narrowed(form: DealTableForm, filterset: DealFilter) -> bool:
    """Whether the table's deals are narrowed by more than the visibility: a search, or a filter with a value."""
    return bool(form.text()) or any(value not in (None, "", []) for value in filterset.form.cleaned_data.values())


def _page_link(pagination: ApiPagination, position, direction: str, query: str) -> str | None:
    """The table's address at `position` of its walk: the API's cursor, on this page's own query."""
    link = pagination._link(position, direction)
    if link is None:
        return None
    cursor = QueryDict(urlsplit(link).query)["cursor"]
    return f"{reverse('pipeline:deal_table')}?{query}{'&' if query else ''}{urlencode({'cursor': cursor})}"


class _Parameters:
    """What `ApiPagination` reads of a request: its query parameters and its address."""

    def __init__(self, request: HttpRequest, params: QueryDict):
        self.query_params = params
        self.build_absolute_uri = request.build_absolute_uri


def _saved_views(user) -> QuerySet:
    return selectors.saved_deal_views(user=user).values_list("pk", "name", "query", named=True)


def _table_context(request: HttpRequest, params: QueryDict) -> dict:
    pick_lists = PickLists(request.user)  # the filters' and the bulk form's, at one version
    form, filterset, deals, ordering = _matching_deals(request.user, params, pick_lists=pick_lists)
    columns = form.chosen_columns()
    errors = [
        f"{form.fields[name].label if name in form.fields else name}: {' '.join(messages_)}"
        for name, messages_ in {**filterset.form.errors, **form.errors}.items()
    ]
    pagination = ApiPagination()
    try:
        # The parameters given, not the request's own: the bulk form re-renders the table it was sent from.
        page = pagination.paginate_queryset(selectors.deal_table_rows(deals, columns), _Parameters(request, params))
    except exceptions.ValidationError as error:
        errors.extend(f"{name}: {' '.join(map(str, problems))}" for name, problems in error.detail.items())
        page, pagination.next_position, pagination.previous_position = [], None, None
        pagination.signature = ""
    query = view_query(params)
    sort = form.ordering()
    names = selectors.deal_table_names(page, columns, pick_lists)
    return {
        "filter_form": form,
        "errors": errors,
        "columns": columns,
        # One string, not a list the template loops over (its for-tag over 50 rows: 0.56 → 0.49 ms of the partial).
        "rows": mark_safe("".join(_row(deal, columns, names) for deal in page)),  # each row is escaped
        "total": selectors.deal_count(deals, narrowed=_narrowed(form, filterset)),
        "next_url": _page_link(pagination, pagination.next_position, "n", query),
        "previous_url": _page_link(pagination, pagination.previous_position, "p", query),
        "query": query,
        "sort": sort,
        "headers": _headers(columns, params, sort),
        "saved_views": pick_lists.rows(_saved_views),
        "save_form": SavedDealViewForm(initial={"query": query}),
        "bulk_form": BulkDealForm(user=request.user, pick_lists=pick_lists),
        "sees_others": sees_others(request),
        "ordering": ordering,
        "drill_down": [
            (name, label, value)
            for name, label in DRILL_DOWN_PARAMETERS.items()
            for value in params.getlist(name)
            if value != ""
        ],
    }


def _row(deal, columns, names: dict[str, dict]) -> SafeString:
    """The deal's row: its tick box, then each column's value as the export writes it (`data-value`) and as the page
    shows it. Written here once, with `html.escape` (what `format_html` calls per argument, without its parsing of
    the format), not by the template per cell: 300 cells through the template language were a third of the page's
    time for an admin, and the 50 rows' own markup 2.6 ms of a rep's (docs/performance.md, "The deal table")."""
    cells = []
    for column, value in zip(columns, selectors.deal_row_values(deal, columns, names), strict=True):
        text, key = escape(csv_cell(value)), column.key
        if key == "title":
            link = url_of(deal.id, "pipeline:deal")
            cells.append(f'<td data-column="{key}" data-value="{text}"><a href="{link}">{escape(value)}</a></td>')
        elif key == "amount":
            shown = escape(money(value, deal.currency))
            cells.append(f'<td data-column="{key}" data-value="{text}" class="num">{shown}</td>')
        else:
            shown = "—" if value is None or value == "" else text
            cells.append(f'<td data-column="{key}" data-value="{text}">{shown}</td>')
    pk = int(deal.id)
    return mark_safe(  # every value above is escaped
        f'<tr id="deal-row-{pk}" data-deal-id="{pk}"><td><input type="checkbox" name="deal" value="{pk}"'
        f' aria-label="Select {escape(deal.title)}"></td>{"".join(cells)}</tr>'
    )


def _headers(columns, params: QueryDict, sort: str) -> list[tuple]:
    """Per column: the table's address sorted by it when it is sortable (the other way round when it is the sort:
    descending first), and its `aria-sort` direction when it is the sort."""
    headers = []
    for column in columns:
        link = direction = None
        if column.key in selectors.DEAL_TABLE_SORTS:
            query = QueryDict(view_query(params), mutable=True)
            query["sort"] = column.key if sort == f"-{column.key}" else f"-{column.key}"
            link = f"{reverse('pipeline:deal_table')}?{query.urlencode()}"
            direction = {column.key: "ascending", f"-{column.key}": "descending"}.get(sort)
        headers.append((column, link, direction))
    return headers


@login_required
@require_GET
def deal_table(request: HttpRequest) -> HttpResponse:
    """The deals the user may see as a sortable, filterable table, 50 a page (`page_size` up to 200)."""
    context = _table_context(request, request.GET)
    if is_htmx(request) and request.headers.get("HX-Target") == "deal-results":
        return render(request, "pipeline/partials/deal_table_results.html", context)
    return render(request, "pipeline/deal_table.html", context)


@login_required
@require_GET
def deal_table_export(request: HttpRequest) -> HttpResponse:
    """The table as CSV: every deal it selects (all pages), in its order and its chosen columns."""
    form, _filterset, _deals, ordering = _matching_deals(request.user, request.GET)
    columns = form.chosen_columns()

    def narrow(visible):
        return _matching_deals(request.user, request.GET, visible)[2]

    return csv_download(
        kind="deals",
        user=request.user,
        narrow=narrow,
        filename="deals.csv",
        columns={column.key: column.value for column in columns},
        lookups=[lookup for column in columns for lookup in column.lookups],
        ordering=ordering,
    )


@login_required
@require_POST
def deal_table_bulk(request: HttpRequest) -> HttpResponse:
    """One change (owner, stage, close date) to each ticked deal the user may edit, deal by deal: the answer is
    the table again, with a line per deal saying whether it changed or why it was refused."""
    form = BulkDealForm(request.POST, user=request.user)
    params = QueryDict(request.POST.get("query", ""))
    outcomes, refused_unknown, problem = [], 0, ""
    if form.is_valid():
        ids = form.cleaned_data["deal"]
        deals = list(selectors.editable_deals(request.user).filter(pk__in=ids).order_by("title", "id"))
        # A deal the user may not change (or that does not exist) is not named: the same answer for both.
        refused_unknown = len(set(ids) - {deal.pk for deal in deals})
        outcomes = services.bulk_change_deals(deals=deals, actor=request.user, **form.change())
    else:
        problem = first_error(form)
    if not is_htmx(request):
        changed = sum(outcome.changed for outcome in outcomes)
        if problem:
            messages.error(request, problem)
        else:
            messages.success(request, f"Changed {changed} of {len(outcomes) + refused_unknown} deals.")
        return redirect(f"{reverse('pipeline:deal_table')}?{params.urlencode()}")
    context = _table_context(request, params)
    context.update(
        outcomes=outcomes,
        changed_count=sum(outcome.changed for outcome in outcomes),
        refused_count=sum(not outcome.changed for outcome in outcomes) + refused_unknown,
        refused_unknown=refused_unknown,
        bulk_problem=problem,
        bulk_form=form if problem else context["bulk_form"],
    )
    return render(request, "pipeline/partials/deal_table_results.html", context)


@login_required
@require_POST
def deal_view_save(request: HttpRequest) -> HttpResponse:
    """Save the table's current filters, sort and columns under a name (again under a used name: replaced)."""
    form = SavedDealViewForm(request.POST)
    query = view_query(QueryDict(request.POST.get("query", "")))
    if form.is_valid():
        try:
            view = services.save_deal_view(owner=request.user, name=form.cleaned_data["name"], query=query)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, f"Saved the view “{view.name}”.")
    else:
        messages.error(request, first_error(form))
    return redirect(f"{reverse('pipeline:deal_table')}?{query}")


@login_required
@require_POST
def deal_view_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Forget one of the user's saved views (another user's answers 404)."""
    view = get_object_or_404(selectors.saved_deal_views(user=request.user), pk=pk)
    services.delete_deal_view(view=view)
    messages.success(request, f"Deleted the view “{view.name}”.")
    return redirect("pipeline:deal_table")
