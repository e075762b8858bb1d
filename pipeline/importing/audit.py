"""Audit entries for what an import writes, in the shape `services.record_audit` gives them, written with COPY.

A created record gets a `created` entry with each filled field as [None, value]; an updated one an `updated`
(or, for a deal that moved, `stage_changed`) entry with each changed field as [old, new]. Foreign keys are ids,
and `id`, `updated_at`, `version` and the furthest-stage stamp are left out, as in the services. The actor is the
user running the import.
"""

import json
from collections.abc import Iterable
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from accounts.models import AuditEntry, User
from pipeline.importing.references import New, pk_of
from pipeline.importing.writing import copy_rows

# `furthest_open_order` is the stage history's stamp, not a field anyone sets: the services' entries lack it too.
NOT_AUDITED = frozenset({"id", "updated_at", "version", "furthest_open_order"})
COLUMNS = ["at", "actor_id", "action", "content_type_id", "object_id", "object_repr", "changes"]


def _value(value: Any) -> Any:
    return pk_of(value) if isinstance(value, New) else value


def created_changes(fields: Iterable[tuple[str, Any]]) -> dict[str, list]:
    """[None, value] for each audited field that is filled, from (field name, value) pairs."""
    return {
        name: [None, _value(value)] for name, value in fields if name not in NOT_AUDITED and value not in (None, "", [])
    }


def updated_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list]:
    """[old, new] for each audited field of `after` whose value differs from `before` (foreign keys as ids)."""
    changes = {}
    for name, value in after.items():
        new = _value(value)
        if name not in NOT_AUDITED and before.get(name) != new:
            changes[name] = [before.get(name), new]
    return changes


def copy_entries(
    *, model: type[models.Model], actor: User | None, entries: Iterable[tuple[int, str, str, dict[str, list]]]
) -> int:
    """Write (object id, action, object repr, changes) entries about `model` records; returns how many."""
    content_type_id = ContentType.objects.get_for_model(model).pk
    actor_id = actor.pk if actor else None
    at = timezone.now()
    return copy_rows(
        AuditEntry,
        COLUMNS,
        (
            (
                at,
                actor_id,
                action,
                content_type_id,
                object_id,
                object_repr[:200],
                json.dumps(changes, cls=DjangoJSONEncoder),
            )
            for object_id, action, object_repr, changes in entries
        ),
    )
