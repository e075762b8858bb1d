"""The options of the pages' selects (pipelines, stages, owners, teams, lost reasons, a user's saved views), and the
owners whose deals a user sees, read once per process and per version of the tables they are made of, not on every
page.

The deal table offers five such lists, the stages and (for a manager or an admin) the owners twice: 5 to 7 queries
and about 4 ms of a rep's 22 ms in-process, for lists that change a few times a day (docs/performance.md, "The
deal table").

The version is a number in `pipeline_pick_list_version`, set anew by a statement trigger on every table the lists are
made of: users (but for their logins), teams and their managers, pipelines, stages, lost reasons and saved views, on
every write path (services, the admin, imports, raw SQL, a TRUNCATE). It is set in the writer's transaction, so a
reader sees the new number exactly when it can see the change; and from a sequence, so a number a rolled-back change
took is never given again and a list cached under it is never taken for another state.

A list is cached under its query's SQL and parameters: the same query at the same version has the same rows,
whoever asks (every admin shares one list of owners; a rep's owners are their own query). A page reads the version
once (`PickLists`), on the primary, and a missing list on the primary too: a replica behind it would otherwise fill
the cache with an older state under the newer number.
"""

from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet

# The tables a pick list is made of (the saved views: the deal tables a user may pick); accounts_user's logins
# (last_login) and passwords are not among its columns.
WATCHED_TABLES = {
    "accounts_user": "UPDATE OF username, first_name, last_name, is_active, role, team_id OR INSERT OR DELETE",
    "accounts_team": "UPDATE OR INSERT OR DELETE",
    "accounts_team_managers": "UPDATE OR INSERT OR DELETE",
    "pipeline_pipeline": "UPDATE OR INSERT OR DELETE",
    "pipeline_stage": "UPDATE OR INSERT OR DELETE",
    "pipeline_lostreason": "UPDATE OR INSERT OR DELETE",
    "pipeline_saveddealview": "UPDATE OR INSERT OR DELETE",
}

# Not a model: `manage.py flush` (and the tests' flushes) truncate the models' tables, which would lose the row.
TRIGGERS_SQL = "\n".join(
    [
        """
CREATE SEQUENCE pipeline_pick_list_versions;
CREATE TABLE pipeline_pick_list_version (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO pipeline_pick_list_version (version) VALUES (nextval('pipeline_pick_list_versions'));

CREATE FUNCTION pipeline_pick_lists_changed() RETURNS trigger AS $$
BEGIN
    UPDATE pipeline_pick_list_version SET version = nextval('pipeline_pick_list_versions');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
""",
        *(
            f"CREATE TRIGGER {table}_pick_lists AFTER {events} ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION pipeline_pick_lists_changed();\n"
            f"CREATE TRIGGER {table}_pick_lists_truncated AFTER TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION pipeline_pick_lists_changed();"
            for table, events in WATCHED_TABLES.items()
        ),
    ]
)

DROP_TRIGGERS_SQL = "\n".join(
    [
        *(
            f"DROP TRIGGER {table}_pick_lists ON {table}; DROP TRIGGER {table}_pick_lists_truncated ON {table};"
            for table in WATCHED_TABLES
        ),
        "DROP FUNCTION pipeline_pick_lists_changed();",
        "DROP TABLE pipeline_pick_list_version;",
        "DROP SEQUENCE pipeline_pick_list_versions;",
    ]
)

# (SQL, parameters, label or shape) → (version, options or names); emptied when it outgrows this (a user's own
# lists are a few each).
_cached: dict[tuple, tuple[int, Any]] = {}
CACHED_LISTS_LIMIT = 4096


def pick_list_version() -> int:
    """The version of the tables the pick lists are made of, on the primary."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT version FROM pipeline_pick_list_version")
        (version,) = cursor.fetchone()
    return version


class PickLists:
    """The options one page offers, all at the version the page first asked for (read once)."""

    def __init__(self):
        self._version: int | None = None

    def options(self, queryset: QuerySet, label: Callable[..., str] | None = None) -> list[tuple]:
        """(id, label) per row of `queryset` (a `values_list` whose first field is the id): the label `label(*rest)`,
        or the one field after the id."""
        return self._read(queryset, label, lambda rows: _labelled(rows, label))

    def names(self, queryset: QuerySet) -> dict:
        """{id: the one field after it} of `queryset` (a `values_list`): what a page's rows show of a stage, say."""
        return self._read(queryset, dict, dict)

    def rows(self, queryset: QuerySet) -> list:
        """The rows of `queryset` (a `values_list`, `named` for a template): a user's saved views, say."""
        return self._read(queryset, list, list)

    def _read(self, queryset: QuerySet, shape: Callable, make: Callable[[QuerySet], Any]) -> Any:
        if self._version is None:
            self._version = pick_list_version()
        try:
            sql, params = queryset.query.sql_with_params()
        except EmptyResultSet:  # `none()`: an inactive user's
            return make([])
        key = (sql, repr(params), shape)
        cached = _cached.get(key)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        value = make(queryset.using(DEFAULT_DB_ALIAS))
        if len(_cached) >= CACHED_LISTS_LIMIT:
            _cached.clear()
        _cached[key] = (self._version, value)
        return value


def _labelled(rows: Sequence[tuple], label: Callable[..., str] | None) -> list[tuple]:
    if label is None:
        return [(pk, name) for pk, name in rows]
    return [(pk, label(*rest)) for pk, *rest in rows]
