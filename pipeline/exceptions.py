"""Errors the pipeline services raise besides `django.core.exceptions.ValidationError` (bad input)."""


class StaleVersion(Exception):
    """The record changed since the caller read it (optimistic concurrency): reload and try again."""

    def __init__(self, *, expected: int, current: int):
        super().__init__(f"The record was changed by someone else (your version {expected}, current {current}).")
        self.expected = expected
        self.current = current
