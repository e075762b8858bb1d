"""Outbound safety: no deliveries to loopback, private, link-local or otherwise non-public addresses, unless allowed."""

import re

import pytest
from django.test import override_settings

from pipeline.webhooks import safety
from pipeline.webhooks.safety import UnsafeWebhookUrl, check_webhook_url, is_public_address
from tests.api.conftest import client_for

PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
NOT_PUBLIC = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "2002:7f00:1::",
    "ff02::1",
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert is_public_address(address)


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_other_addresses_are_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1/hook", "127.0.0.1"),
        ("https://10.0.0.5/hook", "10.0.0.5"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("https://[::1]:8443/hook", "::1"),
        ("https://localhost/hook", "loopback"),
        ("http://127.0.0.1:8000/hook", "https://"),
        ("ftp://example.com/hook", "https://"),
        ("https://user:pass@example.com/hook", "Credentials"),
        ("https://no-such-host.invalid/hook", "could not be resolved"),
    ],
)
def test_unsafe_urls_are_refused_with_the_reason(url, message):
    with pytest.raises(UnsafeWebhookUrl, match=re.escape(message)):
        check_webhook_url(url)


def test_a_public_host_resolves_to_a_target_pinned_to_the_checked_address(monkeypatch):
    monkeypatch.setattr(safety, "_resolve", lambda host, port: ["93.184.215.14"])
    target = check_webhook_url("https://hooks.example.com:8443/in?source=crm")
    assert (target.address, target.port, target.path) == ("93.184.215.14", 8443, "/in?source=crm")
    assert target.host_header == "hooks.example.com:8443"


def test_one_private_address_among_public_ones_is_enough_to_refuse(monkeypatch):
    monkeypatch.setattr(safety, "_resolve", lambda host, port: ["93.184.215.14", "192.168.0.10"])
    with pytest.raises(UnsafeWebhookUrl, match=re.escape("192.168.0.10")):
        check_webhook_url("https://hooks.example.com/in")


@override_settings(WEBHOOK_ALLOWED_HOSTS=["localhost", "127.0.0.1"])
def test_allowed_hosts_may_be_local_and_plain_http():
    assert check_webhook_url("http://localhost:8000/hook").address == "127.0.0.1"
    assert check_webhook_url("http://127.0.0.1:8000/hook").host == "127.0.0.1"
    with pytest.raises(UnsafeWebhookUrl):
        check_webhook_url("https://10.0.0.5/hook")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.5/hook",
        "https://169.254.169.254/latest",
        "https://[::1]/hook",
        "https://localhost/hook",
    ],
)
def test_the_api_refuses_to_subscribe_a_blocked_address_with_a_message_on_url(org, url):
    response = client_for(org.rep).post("/api/v1/webhooks/", {"url": url, "events": ["deal.created"]})
    assert response.status_code == 400
    assert list(response.json()) == ["url"]
    assert response.json()["url"][0]
