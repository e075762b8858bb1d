"""The configuration the numbers depend on, as one fingerprint: a run is computed with one, and stays patchable only
while the configuration is still the one it was computed with.

What changes a number without changing a deal: a stage's probability (the configured forecast, p0 of the learned
probabilities), its order and kind (funnels, furthest stage reached), its rotting days (stale deals) and its default
forecast category; who is in which team (every team row); the quotas; and the settings the families read (time
zone, the learned probabilities' lookback and prior strength). Names, required fields, team names and managers,
roles and the default pipeline change no number, so they are left out (changing them costs no recompute).

An incremental refresh (`forecasting.recompute.refresh_latest_run`) recomputes some slices of a run: with another
configuration those slices would disagree with the rest (a quarter's weighted forecast no longer the sum of its
months). So a refresh, and a full recompute, compare the fingerprint at their end with the run's, and give way to
a full recompute when they differ (`ConfigurationChanged`).
"""

from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from forecasting.metrics import MetricParams

# One md5 over every row of what the families read of the configuration, in id order, and the settings. Each table
# is coalesced to '' so that an empty table keeps its place; a row as a record literal keeps NULLs apart from
# values ("(3,)" is not "(,3)").
FINGERPRINT_SQL = """
SELECT md5(concat_ws('|',
    coalesce((SELECT string_agg(ROW(id, pipeline_id, "order", kind, probability, rotting_days, forecast_category)::text,
                                ';' ORDER BY id) FROM pipeline_stage), ''),
    coalesce((SELECT string_agg(ROW(id, team_id)::text, ';' ORDER BY id) FROM accounts_user), ''),
    coalesce((SELECT string_agg(ROW(id, user_id, team_id, period_start, period_end, amount)::text, ';' ORDER BY id)
                FROM forecasting_quota), ''),
    ROW(%(tz)s::text, %(lookback_days)s::int, %(prior_strength)s::int)::text
))
"""


class ConfigurationChanged(Exception):
    """The configuration changed while a recompute or a refresh ran, or since the run a refresh would patch."""


def fingerprint(cursor: CursorWrapper, params: MetricParams) -> str:
    """The fingerprint of the configuration as the database holds it now, with the settings of `params`."""
    cursor.execute(
        FINGERPRINT_SQL,
        {"tz": params.tz, "lookback_days": params.lookback_days, "prior_strength": params.prior_strength},
    )
    return cursor.fetchone()[0]


def current_fingerprint(cursor: CursorWrapper) -> str:
    """The fingerprint a recompute starting now would be computed with (the settings read now)."""
    return fingerprint(cursor, MetricParams.of_run(run_id=0, computed_at=timezone.now()))
