"""Events of accounts, sent by `accounts.services` only after the write they describe has committed.

Sent with `actor` (the user who acted, or None for the system) as a keyword argument, like `pipeline.signals`.
"""

from django.dispatch import Signal

# Users joined or left teams: users (the users whose team changed), teams (every team that gained or lost a member).
team_membership_changed = Signal()
