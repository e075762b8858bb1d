"""Domain events of the pipeline, sent by `pipeline.services` only after the write they describe has committed.

Receivers (metrics recompute, webhooks, notifications) connect here; a receiver never sees a rolled-back change.
Every signal is sent with `actor` (the user who acted, or None for the system) and the record as keyword args.
"""

from django.dispatch import Signal

deal_created = Signal()  # deal
deal_updated = Signal()  # deal, changed_fields
deal_stage_changed = Signal()  # deal, stage_change
lead_created = Signal()  # lead
lead_status_changed = Signal()  # lead, from_status
lead_converted = Signal()  # lead, deal
activity_logged = Signal()  # activity
activity_completed = Signal()  # activity
# A CSV import wrote records in bulk (no per-record signals are sent for them): kind, created, updated.
records_imported = Signal()
# The configuration of pipelines changed in a way that changes numbers (a pipeline or stage added; a stage's
# probability, order, rotting days or default forecast category): pipeline, stages.
configuration_changed = Signal()
