"""Failed token attempts against a real gunicorn server, with Redis down all along: the protection lives in
PostgreSQL. Clients bind their own loopback addresses (127.0.0.2, 127.0.0.3), so the server sees two addresses."""

import socket
import time

import pytest
import requests
from requests.adapters import HTTPAdapter

from accounts.models import FailedTokenAttempts
from accounts.services import create_api_token
from tests.faults.conftest import REQUEST_TIMEOUT, app_env, committed_database_url, free_port, start_web, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Waits long enough that a loaded machine still makes its next request within them; short enough for a test.
LIMITS = {
    "API_TOKEN_FAILURES_BEFORE_DELAY": "2",
    "API_TOKEN_DELAY_SECONDS": "5",
    "API_TOKEN_FAILURE_LIMIT": "4",
    "API_TOKEN_LOCKOUT_SECONDS": "10",
}
BAD_TOKEN = "crm_0123456789ab.a-guess"


class FromAddress(HTTPAdapter):
    """Connects from the given local address, as a client on another machine would."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def loopback_aliases_work() -> bool:
    """Linux routes all of 127.0.0.0/8 to the loopback interface; other systems may only have 127.0.0.1."""
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


def client_from(address: str, base_url: str):
    session = requests.Session()
    session.mount("http://", FromAddress(address))

    def get(token: str) -> requests.Response:
        return session.get(
            f"{base_url}/api/v1/deals/", headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT
        )

    return get


@pytest.mark.skipif(not loopback_aliases_work(), reason="needs 127.0.0.2 and 127.0.0.3 as client addresses")
def test_failed_token_attempts_are_slowed_then_locked_per_address_while_redis_is_down(org, processes):
    _, good_token = create_api_token(user=org.rep, name="integration")
    nobody_listens = f"redis://127.0.0.1:{free_port()}/0"
    env = app_env(database_url=committed_database_url(), redis_url=nobody_listens, **LIMITS)
    base_url, web = start_web(processes, env)
    assert requests.get(f"{base_url}/healthz", timeout=REQUEST_TIMEOUT).json()["broker"].startswith("error")
    attacker, colleague = client_from("127.0.0.2", base_url), client_from("127.0.0.3", base_url)

    free = [attacker(BAD_TOKEN).status_code for _ in range(3)]  # the third one asks for a wait
    slowed = attacker(good_token)
    elsewhere_while_slowed = colleague(good_token)

    assert free == [401, 401, 401]
    assert slowed.status_code == 429, web.log()
    assert slowed.json()["detail"].startswith("Too many failed token attempts from your address: wait ")
    assert 1 <= int(slowed.headers["Retry-After"]) <= 5
    assert elsewhere_while_slowed.status_code == 200

    time.sleep(int(slowed.headers["Retry-After"]))
    limit_reached = attacker(BAD_TOKEN)
    locked = attacker(good_token)
    elsewhere_while_locked = colleague(good_token)

    assert limit_reached.status_code == 401
    assert locked.status_code == 429
    assert "token authentication is locked for" in locked.json()["detail"]
    assert 1 <= int(locked.headers["Retry-After"]) <= 10
    assert elsewhere_while_locked.status_code == 200
    assert FailedTokenAttempts.objects.get(address="127.0.0.2").failures == 4
    assert not FailedTokenAttempts.objects.filter(address="127.0.0.3").exists()

    refused_while_waiting = []

    def unlocked() -> bool:
        response = attacker(good_token)
        refused_while_waiting.append(response.status_code)
        return response.status_code == 200

    started = time.monotonic()
    wait_for(unlocked, timeout=60, what="the lockout to expire", logs=web.log)
    print(
        f"\ntoken lockout: statuses {free} then {slowed.status_code} (Retry-After {slowed.headers['Retry-After']}), "
        f"{limit_reached.status_code} then {locked.status_code} (Retry-After {locked.headers['Retry-After']}); "
        f"other address {elsewhere_while_slowed.status_code}/{elsewhere_while_locked.status_code}; "
        f"unlocked after {time.monotonic() - started:.1f} s of polling ({len(refused_while_waiting) - 1} more 429s)"
    )
    assert set(refused_while_waiting[:-1]) <= {429}
    assert attacker(BAD_TOKEN).status_code == 401  # the count starts again after the lockout
