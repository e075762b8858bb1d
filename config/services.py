"""What the services of every app share when they edit a record's fields (after HackSoft's `model_update`): a
whitelist of what a caller may set, and a save of only the columns that changed.

Here, below the apps, so that each may use it (config imports no app).
"""

from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models


def set_fields(instance: models.Model, data: dict[str, Any], fields: Iterable[str]) -> list[str]:
    """Set `data` on `instance` without saving; return the names whose value changed (foreign keys by id).

    A name outside `fields`, the ones a caller may set, is a ValidationError naming it, and nothing is set.
    """
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValidationError({name: "This field cannot be set here." for name in unknown})
    changed = []
    for name, value in data.items():
        field = instance._meta.get_field(name)
        if field.is_relation:
            current, new = getattr(instance, field.attname), getattr(value, "pk", value)
        else:
            current, new = getattr(instance, name), value
        if current != new:
            setattr(instance, name, value)
            changed.append(name)
    return changed


def _column_values(instance: models.Model) -> dict[str, Any]:
    # Deferred columns are left out: reading them would cost a query each, and what nobody loaded did not change.
    deferred = instance.get_deferred_fields()
    return {
        field.attname: getattr(instance, field.attname)
        for field in instance._meta.concrete_fields
        if field.attname not in deferred
    }


def _changed(field: models.Field, before: dict[str, Any], after: dict[str, Any]) -> bool:
    if field.attname not in after:
        return False
    return field.attname not in before or after[field.attname] != before[field.attname]


def apply_fields(
    instance: models.Model,
    data: dict[str, Any],
    fields: Iterable[str],
    *,
    before_save: Callable[[list[str]], None] | None = None,
    save: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """Set `data` on the saved `instance` as `set_fields` does and, when a value changed, save only the columns
    that changed (with the `auto_now` timestamps); return the names of `data` whose value changed.

    `before_save(changed)` runs between the two when something changed: validation (raising leaves the row as it
    was) and derived values, whose columns are saved too. Nothing is written when nothing changed. `save(columns)`,
    when given, is called with the names of the columns to save instead of saving them (a batch writes them later).
    """
    before = _column_values(instance)
    changed = set_fields(instance, data, fields)
    if not changed:
        return changed
    if before_save is not None:
        before_save(changed)
    after = _column_values(instance)
    update_fields = [
        field.name
        for field in instance._meta.concrete_fields
        if not field.primary_key and (_changed(field, before, after) or getattr(field, "auto_now", False))
    ]
    if save is not None:
        save(update_fields)
    else:
        instance.save(update_fields=update_fields)
    return changed
