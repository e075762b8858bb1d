"""Set-based writes for imports: ids reserved from a table's sequence, COPY for new rows, UPDATE … FROM for changes.

Called inside the import's transaction; the database's constraints and triggers check every row as usual.
"""

from collections.abc import Iterable, Sequence

from django.db import connection, models


class ChangedMeanwhile(Exception):
    """Records the import checked were changed by someone else before it could write: run it again."""

    def __init__(self, count: int):
        super().__init__(
            f"{count} record(s) changed while the file was being checked; nothing was written. Run the import again."
        )
        self.count = count


def reserve_ids(model: type[models.Model], count: int) -> list[int]:
    """`count` fresh primary keys of `model`, so that child rows can point at parents before either is written."""
    if not count:
        return []
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count])
        return [row[0] for row in cursor.fetchall()]


def copy_rows(model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """COPY `rows` (tuples in the order of `columns`, which are database column names) into `model`'s table."""
    quoted = [connection.ops.quote_name(column) for column in columns]
    with connection.cursor() as cursor:
        return copy_rows_into(cursor, connection.ops.quote_name(model._meta.db_table), quoted, rows)


def update_rows(
    model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence], *, extra_set: str = ""
) -> int:
    """Set `columns` of the rows whose id is each row's first value, in one UPDATE … FROM a temporary table.

    `rows` are tuples `(id, *values)`; `extra_set` is SQL appended to the SET list (e.g. a version bump).
    """
    table = connection.ops.quote_name(model._meta.db_table)
    names = [connection.ops.quote_name(column) for column in columns]
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS import_changes")
        columns_sql = ", ".join(names)
        cursor.execute(
            f"CREATE TEMP TABLE import_changes ON COMMIT DROP AS SELECT id, {columns_sql} FROM {table} WITH NO DATA"
        )
        count = copy_rows_into(cursor, "import_changes", ["id", *names], rows)
        if not count:
            return 0
        cursor.execute("ANALYZE import_changes")  # temporary tables get no statistics otherwise: a poor join plan
        assignments = ", ".join(f"{name} = import_changes.{name}" for name in names)
        if extra_set:
            assignments += f", {extra_set}"
        cursor.execute(f"UPDATE {table} SET {assignments} FROM import_changes WHERE {table}.id = import_changes.id")
        cursor.execute("DROP TABLE import_changes")
        return count


def copy_rows_into(cursor, table: str, quoted_columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(quoted_columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def lock_unchanged(model: type[models.Model], versions: dict[int, int]) -> None:
    """Lock the rows of `model` whose ids are `versions`' keys; refuse when any version moved since it was read.

    The import checks rows outside its transaction; this keeps a deal moved in the meantime from being
    overwritten with a history that no longer follows on from it.
    """
    ids = list(versions)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, version FROM {connection.ops.quote_name(model._meta.db_table)} "
            "WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            [ids],
        )
        current = dict(cursor.fetchall())
    changed = sum(1 for pk, version in versions.items() if current.get(pk) != version)
    if changed:
        raise ChangedMeanwhile(changed)
