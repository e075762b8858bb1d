"""Lost reason names become unique ignoring case ("Price" and "price" are one reason), held by the database.

Existing case-duplicates: the oldest of each group (lowest id) keeps its name; each later one is renamed by adding
" (2)", " (3)", ... until the name is free, and the migration prints every rename. Nothing is merged or deleted:
deals lost for a renamed reason keep it, and an admin can then rename or retire it in Settings → Lost reasons.
Reversing drops the constraint and restores the case-sensitive unique name (the renames stay).
"""

from django.db import migrations, models
from django.db.models.functions import Lower


def rename_case_duplicates(apps, schema_editor):
    LostReason = apps.get_model("pipeline", "LostReason")
    reasons = list(LostReason.objects.order_by("id"))
    keepers = {}
    for reason in reasons:
        keepers.setdefault(reason.name.lower(), reason.pk)
    taken = set(keepers)  # every name kept, so a rename never takes one ("Price (2)" may exist already)
    for reason in reasons:
        if keepers[reason.name.lower()] == reason.pk:
            continue
        was, number = reason.name, 2
        while True:
            suffix = f" ({number})"
            reason.name = was[: 100 - len(suffix)] + suffix
            if reason.name.lower() not in taken:
                break
            number += 1
        taken.add(reason.name.lower())
        reason.save(update_fields=["name"])
        print(f"\n  Lost reason {reason.pk} renamed from “{was}” to “{reason.name}”: its name differed only in case.")


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0010_deal_field_history")]

    operations = [
        migrations.RunPython(rename_case_duplicates, migrations.RunPython.noop),
        migrations.AlterField(model_name="lostreason", name="name", field=models.CharField(max_length=100)),
        migrations.AddConstraint(
            model_name="lostreason",
            constraint=models.UniqueConstraint(
                Lower("name"),
                name="lost_reason_name_unique_ignoring_case",
                violation_error_message="A lost reason with this name already exists (names ignore case).",
            ),
        ),
    ]
