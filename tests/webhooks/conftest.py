"""Fixtures of the webhook tests: a real HTTP receiver on 127.0.0.1 that checks signatures; Celery in eager mode."""

import hashlib
import hmac
import json
import queue
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from config.celery import app as celery_app


def verify(*, secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """A receiver's check, written independently of `pipeline.webhooks.signing` as an integrator would."""
    parts = [item.split("=", 1) for item in header.split(",")]
    timestamp = next(value for key, value in parts if key == "t")
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(key == "v1" and hmac.compare_digest(value, expected) for key, value in parts)


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    at: float  # time.perf_counter() when the body was read

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local webhook receiver. `plan(status, delay=0, body=b"ok")` queues answers; without a plan it answers 200."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answers: queue.Queue = field(default_factory=queue.Queue)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def plan(self, status: int, *, delay: float = 0.0, body: bytes = b"ok", times: int = 1) -> None:
        for _ in range(times):
            self.answers.put((status, delay, body))

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout=timeout)
        return list(self.received)


def _handler_for(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.arrived:
                receiver.received.append(Received(self.path, dict(self.headers), body, time.perf_counter()))
                receiver.arrived.notify_all()
            try:
                status, delay, answer = receiver.answers.get_nowait()
            except queue.Empty:
                status, delay, answer = 200, 0.0, b"ok"
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:
                pass  # the sender gave up (timeout) and closed the connection

        def log_message(self, *args):
            pass

    return Handler


# How often the server loop looks for a shutdown request. `serve_forever`'s default (0.5 s) made every test that
# used a receiver wait up to half a second in its teardown.
SHUTDOWN_POLL_SECONDS = 0.01


@contextmanager
def serving(state: Receiver, *, wrap_socket: Callable[[socket.socket], socket.socket] | None = None):
    """A threaded HTTP server on 127.0.0.1 answering for `state`, shut down and closed when the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    if wrap_socket is not None:
        server.socket = wrap_socket(server.socket)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver():
    """A receiver at http://127.0.0.1:<port>/, with 127.0.0.1 allowed as a webhook host for the test."""
    state = Receiver()
    with serving(state) as server, override_settings(WEBHOOK_ALLOWED_HOSTS=["127.0.0.1"]):
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        yield state


@pytest.fixture
def fast_retries():
    """Retries without waiting, three attempts, short timeouts."""
    with override_settings(
        WEBHOOK_RETRY_BASE_SECONDS=0,
        WEBHOOK_MAX_ATTEMPTS=3,
        WEBHOOK_CONNECT_TIMEOUT_SECONDS=1,
        WEBHOOK_READ_TIMEOUT_SECONDS=0.3,
    ):
        yield


@pytest.fixture
def eager_celery():
    """Tasks run in the calling process at once (a retry with no delay is attempted straight away)."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def after_commit(django_capture_on_commit_callbacks):
    """`with after_commit(): ...` runs the block's on-commit callbacks (domain signals, queued tasks) at its end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)
