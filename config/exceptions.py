"""Errors that services of any app may raise besides `django.core.exceptions.ValidationError` (bad input).

They live here, importing no app, so that the API base (`config.api`, which answers StaleVersion with 409) stays
below every app.
"""

# The one answer to an external id some record of the kind already holds, visible to the caller or not (README,
# "Decisions"): the services' when they look it up, the API's when a concurrent write took it meanwhile.
EXTERNAL_ID_TAKEN = "This external id is not available."


class StaleVersion(Exception):
    """The record changed since the caller read it (optimistic concurrency): reload and try again."""

    def __init__(self, *, expected: int, current: int):
        super().__init__(f"The record was changed by someone else (your version {expected}, current {current}).")
        self.expected = expected
        self.current = current
