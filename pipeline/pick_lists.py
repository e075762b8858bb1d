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

A list is made by a module-level function of the user (`visible_stages(user).values_list(…)`), and cached under
that function and what the visibility rule reads of the user (`accounts.selectors.visibility_key`): at one version of
the tables, those determine its query, and so its rows. Not under the query's SQL: building and compiling the
querysets of a manager's lists took about 3 ms of a 23 ms page. With `PICK_LISTS_CHECK_KEYS` (the tests' settings) a
list found in the cache is built and compiled anyway and its SQL compared with the cached one's, so a function that
reads more than the key holds fails a test rather than offering one user's list to another.

A page reads the version once (`PickLists`), on the primary, and a missing list on the primary too: a replica behind
it would otherwise fill the cache with an older state under the newer number.
"""

from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet

from accounts.models import User
from accounts.selectors import visibility_key

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

# A list's function: the user's queryset of it.
Rows = Callable[[User], QuerySet]

# (function, shape, the user's visibility key) → (version, rows, SQL); beyond the limit the least recently read is
# dropped (a user's lists are ten or so: a worker keeps 400 users' before it forgets any).
_cached: dict[tuple, tuple[int, Any, str | None]] = {}
CACHED_LISTS_LIMIT = 4096


def pick_list_version() -> int:
    """The version of the tables the pick lists are made of, on the primary."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT version FROM pipeline_pick_list_version")
        (version,) = cursor.fetchone()
    return version


class PickLists:
    """The lists one page offers `user`, all at the version the page first asked for (read once).

    A list is given as a module-level function of the user that makes its queryset (`rows(user)`), called only
    when the list is not cached: the function, with what the visibility rule reads of the user, determines it."""

    def __init__(self, user: User):
        self._user = user
        self._user_key = visibility_key(user)
        self._version: int | None = None

    def options(self, rows: Rows, label: Callable[..., str] | None = None) -> list[tuple]:
        """(id, label) per row of `rows(user)` (a `values_list` whose first field is the id): the label
        `label(*rest)`, or the one field after the id."""
        return self._read(rows, label, lambda queryset: _labelled(queryset, label))

    def names(self, rows: Rows) -> dict:
        """{id: the one field after it} of `rows(user)` (a `values_list`): what a page's rows show of a stage."""
        return self._read(rows, dict, dict)

    def rows(self, rows: Rows) -> list:
        """The rows of `rows(user)` (a `values_list`, `named` for a template): a user's saved views, say."""
        return self._read(rows, list, list)

    def _read(self, rows: Rows, shape: Callable | None, make: Callable[[QuerySet], Any]) -> Any:
        if "<" in rows.__qualname__:  # a lambda's or a closure's: what it captured is not in the key
            raise ValueError(f"A pick list is made by a module-level function of the user, not {rows.__qualname__}")
        if self._version is None:
            self._version = pick_list_version()
        key = (rows, shape, self._user_key)
        cached = _cached.pop(key, None)
        if cached is not None and cached[0] == self._version:
            _cached[key] = cached  # now the most recently read
            if settings.PICK_LISTS_CHECK_KEYS and _sql_of(rows(self._user)) != cached[2]:
                raise AssertionError(f"The pick list {key} was cached for another query: its key does not decide it")
            return cached[1]
        queryset = rows(self._user)
        sql = _sql_of(queryset)
        value = make([] if sql is None else queryset.using(DEFAULT_DB_ALIAS))
        while len(_cached) >= CACHED_LISTS_LIMIT:
            _cached.pop(next(iter(_cached)), None)
        _cached[key] = (self._version, value, sql)
        return value


def _sql_of(queryset: QuerySet) -> str | None:
    """The query's SQL with its parameters, None when it can match nothing (`none()`: an inactive user's)."""
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:
        return None
    return f"{sql} {params!r}"


def _labelled(rows: Sequence[tuple], label: Callable[..., str] | None) -> list[tuple]:
    if label is None:
        return [(pk, name) for pk, name in rows]
    return [(pk, label(*rest)) for pk, *rest in rows]
