"""HTTPS deliveries connect to the address that was checked, yet verify the certificate against the URL's host name."""

import shutil
import ssl
import subprocess
from contextlib import ExitStack

import pytest
import urllib3
from django.test import override_settings

from pipeline.webhooks import services as webhooks
from pipeline.webhooks.models import DeliveryStatus, WebhookDelivery
from tests.factories import make_deal
from tests.webhooks.conftest import Receiver, serving

OPENSSL = shutil.which("openssl")

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command to make a certificate"),
    pytest.mark.usefixtures("eager_celery", "fast_retries"),
]


@pytest.fixture
def tls_receiver(tmp_path):
    """`tls_receiver(name)`: a receiver on https://127.0.0.1:<port> whose self-signed certificate is for `name`."""
    with ExitStack() as servers, override_settings(WEBHOOK_ALLOWED_HOSTS=["localhost"]):

        def start(name: str) -> tuple[Receiver, str]:
            cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
            request = [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}"]
            subprocess.run(
                [*request, "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
                check=True,
                capture_output=True,
            )
            state = Receiver()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server = servers.enter_context(
                serving(state, wrap_socket=lambda plain: context.wrap_socket(plain, server_side=True))
            )
            state.url = f"https://localhost:{server.server_address[1]}"
            return state, str(cert)

        yield start


@pytest.fixture
def trust(monkeypatch):
    """`trust(cert)`: make the sender trust `cert` as if a public authority had signed it."""

    def install(cert: str) -> None:
        original = urllib3.HTTPSConnectionPool.__init__

        def init(self, *args, **kwargs):
            original(self, *args, **{**kwargs, "ca_certs": cert})

        monkeypatch.setattr(urllib3.HTTPSConnectionPool, "__init__", init)

    return install


def test_a_trusted_certificate_for_the_host_name_is_accepted(org, pipeline, tls_receiver, trust, after_commit):
    receiver, cert = tls_receiver("localhost")
    trust(cert)
    webhooks.create_subscription(owner=org.rep, url=receiver.url + "/in", events=["deal.created"])
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    [request] = receiver.wait_for(1)
    assert request.headers["Host"] == receiver.url.removeprefix("https://")
    assert WebhookDelivery.objects.get().status == DeliveryStatus.SUCCEEDED


def test_an_untrusted_certificate_is_refused(org, pipeline, tls_receiver, after_commit):
    receiver, _cert = tls_receiver("localhost")
    webhooks.create_subscription(owner=org.rep, url=receiver.url + "/in", events=["deal.created"])
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    assert receiver.received == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and "CERTIFICATE_VERIFY_FAILED" in delivery.last_error


def test_a_certificate_for_another_name_is_refused(org, pipeline, tls_receiver, trust, after_commit):
    receiver, cert = tls_receiver("other.example")
    trust(cert)
    webhooks.create_subscription(owner=org.rep, url=receiver.url + "/in", events=["deal.created"])
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    assert receiver.received == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert "localhost" in delivery.last_error and "SSLError" in delivery.last_error
