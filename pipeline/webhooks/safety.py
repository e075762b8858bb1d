"""Which URLs may receive webhook deliveries (outbound safety).

A delivery must not become a way to reach the app's own network: by default every address a URL's host resolves to
must be globally routable (no loopback, private, link-local, shared, reserved or multicast address, also when
wrapped in IPv6: mapped, 6to4, Teredo, NAT64). Hosts listed in `WEBHOOK_ALLOWED_HOSTS` are exempt. The check runs
when a subscription is saved and again before every attempt, and the attempt connects to the very address that was
checked, so a DNS answer that changes in between (DNS rebinding) cannot redirect it.

Plain `http` is accepted only for allowed hosts: deliveries carry customer data.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeWebhookUrl(Exception):
    """The URL may not receive deliveries; the message says why, for the subscriber."""


@dataclass(frozen=True)
class WebhookTarget:
    """Where one attempt goes: the checked `address` to connect to, and the `host` to name in `Host` and TLS."""

    scheme: str
    host: str
    port: int
    path: str
    address: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        return host if self.port == default_port else f"{host}:{self.port}"


def is_public_address(address: str) -> bool:
    """Whether `address` is globally routable, looking inside IPv6 forms that carry an IPv4 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d, whatever the IPv6 tables say of ::/8
            return is_public_address(str(ip.ipv4_mapped))
        embedded = [ip.sixtofour, *(ip.teredo or ())]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(inner is not None and not is_public_address(str(inner)) for inner in embedded):
            return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved and not ip.is_unspecified


def is_allowed_host(host: str) -> bool:
    return host.lower().rstrip(".") in {allowed.lower().rstrip(".") for allowed in settings.WEBHOOK_ALLOWED_HOSTS}


def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a seam for tests that simulate DNS answers)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def check_webhook_url(url: str) -> WebhookTarget:
    """The target of `url` if it may receive deliveries now; `UnsafeWebhookUrl` saying why otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeWebhookUrl(f"This URL cannot be parsed ({error}).") from error
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in {"http", "https"}:
        raise UnsafeWebhookUrl("Webhook URLs must start with https://.")
    if not host:
        raise UnsafeWebhookUrl("This URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl("Credentials in the URL are not supported; verify the X-Signature header instead.")
    allowed = is_allowed_host(host)
    if scheme == "http" and not allowed:
        raise UnsafeWebhookUrl("Webhook URLs must use https://.")
    port = port or (443 if scheme == "https" else 80)
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError) as error:
        raise UnsafeWebhookUrl(f"The host “{host}” could not be resolved.") from error
    if not addresses:
        raise UnsafeWebhookUrl(f"The host “{host}” could not be resolved.")
    if not allowed:
        blocked = sorted({address for address in addresses if not is_public_address(address)})
        if blocked:
            raise UnsafeWebhookUrl(
                f"The host “{host}” resolves to an address that is not public ({', '.join(blocked)}); "
                "webhooks are not delivered to loopback, private or link-local networks."
            )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return WebhookTarget(scheme=scheme, host=host, port=port, path=path, address=addresses[0])
