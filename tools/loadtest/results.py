"""The load test's table and verdict, from the timings the virtual users wrote (see `locustfile`)."""

from dataclasses import dataclass, field

from tools.percentile import percentile


@dataclass(frozen=True)
class RequestStats:
    name: str
    count: int
    errors: int
    precondition_failed: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    times_ms: list[float] = field(default_factory=list, repr=False)


def summarize(requests: dict[str, dict]) -> list[RequestStats]:
    """One row per request type, sorted by name, from `{name: {"times_ms", "errors", "precondition_failed"}}`."""
    return [
        RequestStats(
            name=name,
            count=len(entry["times_ms"]),
            errors=entry["errors"],
            precondition_failed=entry["precondition_failed"],
            p50_ms=percentile(entry["times_ms"], 0.50),
            p95_ms=percentile(entry["times_ms"], 0.95),
            max_ms=max(entry["times_ms"], default=0.0),
            times_ms=entry["times_ms"],
        )
        for name, entry in sorted(requests.items())
    ]


def problems(rows: list[RequestStats]) -> list[str]:
    """What makes the run fail: any errored request, or no request at all."""
    found = [f"{row.errors} errors in {row.name}" for row in rows if row.errors]
    if not any(row.count for row in rows):
        found.append("no request was made")
    return found


def table(rows: list[RequestStats]) -> str:
    """The rows, and their total over every request, as an aligned text table."""
    header = ("request type", "count", "errors", "412", "p50 ms", "p95 ms", "max ms")

    def cells(row: RequestStats) -> tuple[str, ...]:
        figures = (row.p50_ms, row.p95_ms, row.max_ms)
        return (row.name, str(row.count), str(row.errors), str(row.precondition_failed), *(f"{v:.0f}" for v in figures))

    total = summarize(
        {
            "all requests": {
                "times_ms": [time for row in rows for time in row.times_ms],
                "errors": sum(row.errors for row in rows),
                "precondition_failed": sum(row.precondition_failed for row in rows),
            }
        }
    )[0]
    lines = [header, *map(cells, rows), cells(total)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]

    def render(line: tuple[str, ...]) -> str:
        return "  ".join([line[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True))])

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *map(render, lines[1:-1]), rule, render(lines[-1])])
