"""An activity remembers the lead it was logged on when it is carried over to the deal that lead was converted into
(`Activity.from_lead`; `services.convert_lead` carries them).

Existing data: the activities of leads converted before this migration move onto their deals the same way (the
deal's timeline gains them, the lead's page still lists them). Reversing puts them back on their leads.
"""

import django.db.models.deletion
from django.db import migrations, models

CARRY_OVER = """
    UPDATE pipeline_activity AS activity
       SET deal_id = lead.deal_id, lead_id = NULL, from_lead_id = lead.id, updated_at = now()
      FROM pipeline_lead AS lead
     WHERE activity.lead_id = lead.id AND lead.deal_id IS NOT NULL
"""
PUT_BACK = """
    UPDATE pipeline_activity SET lead_id = from_lead_id, deal_id = NULL, updated_at = now()
     WHERE from_lead_id IS NOT NULL
"""


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0011_lost_reason_names_unique_ignoring_case")]

    operations = [
        migrations.AddField(
            model_name="activity",
            name="from_lead",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="carried_activities",
                to="pipeline.lead",
            ),
        ),
        migrations.RunSQL(CARRY_OVER, PUT_BACK),
    ]
