"""The load generator of `make bench`: a separate process that sends HTTP requests over loopback and times them.

Reads one JSON job on stdin, writes one JSON result on stdout:
    job:    {"base_url": "http://127.0.0.1:PORT", "paths": [...], "headers": {...}, "concurrency": 4,
             "requests": 200, "seconds": 60, "warmup": 4}
    result: {"latencies_ms": [...], "statuses": {"200": n, ...}, "wall_seconds": s, "errors": [...]}
Each of `concurrency` threads keeps one HTTP/1.1 connection (http.client reconnects when the server closes it)
and takes the next request until `requests` are sent or `seconds` have passed, whichever comes first; `paths`
are used in turn. Warm-up requests (one per thread, and `warmup` more) are sent first and not counted.
Bounded in count and in time, and only ever to the loopback address it is given.
"""

import http.client
import itertools
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def run(job: dict) -> dict:
    target = urlsplit(job["base_url"])
    if target.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the bench driver only sends requests to the loopback address")
    paths = itertools.cycle(job["paths"])
    headers = job.get("headers", {})
    total, deadline_seconds = job["requests"], job["seconds"]
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    sent = 0

    def take() -> str | None:
        nonlocal sent
        with lock:
            if sent >= total or time.monotonic() > deadline:
                return None
            sent += 1
            return next(paths)

    def one(connection: http.client.HTTPConnection, path: str) -> tuple[int, float]:
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000

    def worker() -> None:
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
        try:
            one(connection, job["paths"][0])  # warm-up: connection, worker process caches
        except Exception as error:  # noqa: BLE001 — reported, not raised: the harness decides
            errors.append(repr(error))
        while (path := take()) is not None:
            try:
                status, elapsed = one(connection, path)
            except Exception as error:  # noqa: BLE001
                connection.close()
                with lock:
                    errors.append(repr(error))
                continue
            with lock:
                latencies.append(elapsed)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
        connection.close()

    warm = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
    for path in job["paths"][: job.get("warmup", 4)]:
        try:
            one(warm, path)
        except Exception as error:  # noqa: BLE001
            errors.append(repr(error))
    warm.close()
    started = time.monotonic()
    deadline = started + deadline_seconds
    threads = [threading.Thread(target=worker) for _ in range(job["concurrency"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "latencies_ms": latencies,
        "statuses": statuses,
        "wall_seconds": time.monotonic() - started,
        "errors": errors[:20],
    }


if __name__ == "__main__":
    json.dump(run(json.load(sys.stdin)), sys.stdout)
