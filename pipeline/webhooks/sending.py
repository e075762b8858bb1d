"""One delivery attempt: claim the delivery, re-check its URL, POST the signed event, log the outcome, and decide
what comes next (done, retry later with backoff, failed; and whether the subscription must be disabled).

Retried: network errors, timeouts, redirects (never followed) and every status ≥ 400 except 410 Gone, which says the
receiver is gone for good and disables the subscription at once. A delivery gives up after `WEBHOOK_MAX_ATTEMPTS`;
`WEBHOOK_DISABLE_AFTER_FAILURES` given-up deliveries in a row disable the subscription. A test event is tried once
and changes neither count.
"""

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta

import urllib3
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from pipeline.webhooks import signing
from pipeline.webhooks.models import (
    TEST_EVENT_TYPE,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from pipeline.webhooks.safety import UnsafeWebhookUrl, WebhookTarget, check_webhook_url

logger = logging.getLogger(__name__)

RESPONSE_PREFIX_BYTES = 1024
USER_AGENT = "PipelineCRM-Webhooks/1.0"
OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
# Web and worker hosts stamp and compare due times with their own clocks; a task arriving this much "early" by the
# worker's clock is still taken, rather than left for the sweep a minute later.
CLOCK_SKEW_TOLERANCE = timedelta(seconds=5)


@dataclass(frozen=True)
class AttemptOutcome:
    status_code: int | None = None
    latency_ms: int | None = None
    error: str = ""
    body_prefix: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def event_body(event: WebhookEvent) -> bytes:
    """The JSON a receiver gets: the same bytes on every attempt (and replay), so retries carry the same event `id`;
    `sequence` is the event's place in the event list, from which a receiver catches up (`?after=`)."""
    created_at = event.created_at.isoformat().replace("+00:00", "Z")
    payload = {
        "id": str(event.id),
        "sequence": event.sequence,
        "type": event.type,
        "created_at": created_at,
        "data": event.data,
    }
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False).encode()


def signing_secrets(subscription: WebhookSubscription, *, at) -> list[str]:
    """The current secret, and the previous one while its rotation grace period lasts."""
    secrets = [subscription.secret]
    if (
        subscription.previous_secret
        and subscription.previous_secret_expires_at
        and subscription.previous_secret_expires_at > at
    ):
        secrets.append(subscription.previous_secret)
    return secrets


def retry_delay_seconds(attempts: int) -> float:
    """Exponential backoff with jitter: half of base × 2^(attempts-1) (capped), plus up to as much again at random."""
    ceiling = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def post(*, target: WebhookTarget, body: bytes, headers: dict[str, str]) -> AttemptOutcome:
    """POST `body` to the checked address of `target`: short timeouts, no redirects, at most 1 KB of the answer read."""
    pool_class = urllib3.HTTPSConnectionPool if target.scheme == "https" else urllib3.HTTPConnectionPool
    tls = (
        {"server_hostname": target.host, "assert_hostname": target.host, "cert_reqs": "CERT_REQUIRED"}
        if target.scheme == "https"
        else {}
    )
    timeout = urllib3.Timeout(
        connect=settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS, read=settings.WEBHOOK_READ_TIMEOUT_SECONDS
    )
    pool = pool_class(target.address, target.port, timeout=timeout, retries=False, maxsize=1, **tls)
    started = time.monotonic()
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": target.host_header},
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=False,
        )
        try:
            latency_ms = round((time.monotonic() - started) * 1000)
            prefix = response.read(RESPONSE_PREFIX_BYTES, decode_content=False)[:RESPONSE_PREFIX_BYTES]
        finally:
            response.close()
        error = ""
        if 300 <= response.status < 400:
            error = f"Redirects are not followed (Location: {response.headers.get('Location', '')[:200]})."
        elif response.status >= 400:
            error = f"The receiver answered HTTP {response.status}."
        return AttemptOutcome(
            status_code=response.status,
            latency_ms=latency_ms,
            error=error,
            body_prefix=prefix.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
        )
    except urllib3.exceptions.HTTPError as error:
        latency_ms = round((time.monotonic() - started) * 1000)
        return AttemptOutcome(latency_ms=latency_ms, error=f"{type(error).__name__}: {error}"[:1000])
    finally:
        pool.close()


def _claim(delivery_id: int, *, now) -> WebhookDelivery | None:
    """Take a due delivery for one attempt, or None when it is not due, already taken, done or gone.

    The conditional UPDATE makes two workers holding the same task attempt it once; the lease moves the delivery's
    due time past the longest possible attempt, after which a crashed attempt is due again.
    """
    lease = settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS + settings.WEBHOOK_READ_TIMEOUT_SECONDS + 60
    due = WebhookDelivery.objects.filter(
        pk=delivery_id, status__in=OPEN_STATUSES, next_attempt_at__lte=now + CLOCK_SKEW_TOLERANCE
    )
    claimed = due.update(
        attempts=F("attempts") + 1, last_attempt_at=now, next_attempt_at=now + timedelta(seconds=lease)
    )
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("subscription", "event").get(pk=delivery_id)


def attempt_delivery(*, delivery_id: int) -> WebhookDelivery | None:
    """Make one attempt at a due delivery and record it; returns the delivery, or None when it was not due."""
    now = timezone.now()
    delivery = _claim(delivery_id, now=now)
    if delivery is None:
        return None
    subscription, event = delivery.subscription, delivery.event
    is_test = event.type == TEST_EVENT_TYPE
    if not subscription.is_active and not is_test:
        outcome = AttemptOutcome(error="Not sent: the subscription is disabled.")
    else:
        body = event_body(event)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            "Connection": "close",
            "X-Webhook-Id": str(event.id),
            "X-Webhook-Event": event.type,
            "X-Webhook-Delivery": str(delivery.pk),
            "X-Webhook-Attempt": str(delivery.attempts),
            "X-Signature": signing.signature_header(
                secrets=signing_secrets(subscription, at=now), timestamp=timestamp, body=body
            ),
        }
        try:
            outcome = post(target=check_webhook_url(subscription.url), body=body, headers=headers)
        except UnsafeWebhookUrl as error:
            outcome = AttemptOutcome(error=f"Blocked: {error}")
        except Exception as error:
            logger.exception("webhook delivery %s: unexpected error", delivery.pk)
            outcome = AttemptOutcome(error=f"Unexpected error while sending: {type(error).__name__}")
    _record(delivery, outcome, is_test=is_test, disabled=not subscription.is_active and not is_test)
    return delivery


def _record(delivery: WebhookDelivery, outcome: AttemptOutcome, *, is_test: bool, disabled: bool) -> None:
    now = timezone.now()
    delivery.response_status = outcome.status_code
    delivery.latency_ms = outcome.latency_ms
    delivery.last_error = outcome.error
    delivery.response_body_prefix = outcome.body_prefix
    gone = outcome.status_code == 410
    if outcome.succeeded:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, now, None
    elif gone or disabled or is_test or delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
    else:
        delivery.status = DeliveryStatus.RETRYING
        delivery.next_attempt_at = now + timedelta(seconds=retry_delay_seconds(delivery.attempts))
    with transaction.atomic():
        # An update, not save(): the subscription (and with it the delivery) may have been deleted meanwhile.
        recorded = WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=delivery.status,
            next_attempt_at=delivery.next_attempt_at,
            delivered_at=delivery.delivered_at,
            response_status=delivery.response_status,
            latency_ms=delivery.latency_ms,
            last_error=delivery.last_error,
            response_body_prefix=delivery.response_body_prefix,
        )
        if recorded and not is_test and not disabled:
            _count_outcome(delivery, gone=gone, at=now)


def _count_outcome(delivery: WebhookDelivery, *, gone: bool, at) -> None:
    """Reset the subscription's failure streak on success; extend it when a delivery gives up; disable at the limit."""
    subscriptions = WebhookSubscription.objects.filter(pk=delivery.subscription_id)
    if delivery.status == DeliveryStatus.SUCCEEDED:
        subscriptions.filter(consecutive_failures__gt=0).update(consecutive_failures=0)
        return
    if delivery.status != DeliveryStatus.FAILED:
        return
    subscription = subscriptions.select_for_update().first()
    if subscription is None:
        return
    subscription.consecutive_failures += 1
    reason = ""
    if gone:
        reason = f"The receiver answered 410 Gone to delivery {delivery.pk}."
    elif subscription.consecutive_failures >= settings.WEBHOOK_DISABLE_AFTER_FAILURES:
        reason = (
            f"{subscription.consecutive_failures} deliveries in a row failed after all their attempts; "
            f"the last error: {delivery.last_error}"
        )
    fields = ["consecutive_failures"]
    if reason and subscription.is_active:
        subscription.is_active, subscription.disabled_at, subscription.disabled_reason = False, at, reason
        fields += ["is_active", "disabled_at", "disabled_reason"]
        logger.warning("webhook subscription %s disabled: %s", subscription.pk, reason)
    subscription.save(update_fields=[*fields, "updated_at"])
