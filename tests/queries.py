"""The one way tests count database queries: capture them, then assert how many, with the SQL in the failure.

    with capture_queries() as few:
        client.get(url)
    ... add data ...
    with capture_queries() as many:
        client.get(url)
    assert_query_count(few, many, exactly=3)  # the same each time (no N+1), and exactly three

A wrong count fails with every captured statement, numbered, so the query that appeared (or vanished) is in the
test output rather than behind a debugger. `exactly` is the rule; `at_most` is for the few pages whose count is
bounded rather than pinned; with neither, the captures must only agree with each other.
"""

from django.db import connection
from django.test.utils import CaptureQueriesContext


class CapturedQueries(CaptureQueriesContext):
    """The statements run inside the `with` block on the default connection (`len()` counts them)."""

    @property
    def sql(self) -> list[str]:
        return [query["sql"] for query in self.captured_queries]

    def listing(self) -> str:
        return "\n".join(f"  {number}. {sql}" for number, sql in enumerate(self.sql, start=1))


def capture_queries() -> CapturedQueries:
    """A context manager that captures the queries of its block; pass it to `assert_query_count` afterwards."""
    return CapturedQueries(connection)


def assert_query_count(*captures: CapturedQueries, exactly: int | None = None, at_most: int | None = None) -> None:
    """Every capture made the same number of queries, and `exactly` (or at most `at_most`) that many when given.

    The failure message names the counts and lists the SQL of each capture.
    """
    assert captures, "assert_query_count needs at least one capture"
    assert exactly is None or at_most is None, "give exactly or at_most, not both"
    counts = [len(capture) for capture in captures]
    problems = []
    if len(set(counts)) > 1:
        problems.append(f"the counts differ: {' then '.join(map(str, counts))} queries")
    if exactly is not None and any(count != exactly for count in counts):
        problems.append(f"expected exactly {exactly} queries, got {' then '.join(map(str, counts))}")
    if at_most is not None and any(count > at_most for count in counts):
        problems.append(f"expected at most {at_most} queries, got {' then '.join(map(str, counts))}")
    if problems:
        listings = [
            f"Capture {number} ({len(capture)} queries):\n{capture.listing()}"
            for number, capture in enumerate(captures, start=1)
        ]
        raise AssertionError("; ".join(problems) + ".\n" + "\n".join(listings))
