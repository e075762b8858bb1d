"""Webhooks for integrations (issue #9): subscriptions, signed deliveries after commit, retries, a delivery log.

Where each rule lives:

| module         | responsibility                                                                     |
|----------------|------------------------------------------------------------------------------------|
| models.py      | subscriptions, events (the stable payload, id and sequence) and deliveries         |
| services.py    | every write: subscribe, rotate the secret, emit an event, test, replay, prune      |
| receivers.py   | turns the domain signals of `pipeline.signals` into events                          |
| safety.py      | which URLs and addresses may receive deliveries (no loopback, private, link-local)  |
| signing.py     | the `X-Signature` header: HMAC-SHA256 over "<timestamp>.<body>"                    |
| sending.py     | one delivery attempt over HTTP, its log, the retry schedule, disabling on failures  |
| tasks.py       | Celery entry points: send one delivery, sweep up deliveries that are due            |
| selectors.py   | reads: a user's subscriptions, a subscription's deliveries, the events a user sees  |
| filters.py, serializers.py, views.py | `/api/v1/webhooks/` and `/api/v1/events/`                    |
"""
