"""Errors the accounts services raise besides `django.core.exceptions.ValidationError` (bad input)."""


class TokenAttemptsRefused(Exception):
    """Too many failed token attempts came from this address: it must wait `retry_after` seconds (SPEC §7).

    `locked` tells the lockout (the failure limit was reached) from the delay between attempts that precedes it.
    """

    def __init__(self, *, retry_after: int, locked: bool):
        super().__init__(f"Token authentication from this address is refused for {retry_after} s.")
        self.retry_after = retry_after
        self.locked = locked
