"""What every app's browser forms share: a service's ValidationError shown on the form that sent the input.

The pages of every app write through services that raise per-field ValidationErrors; this module imports no app,
so each of them may use it (as each API viewset uses `config.api`).
"""

from django import forms
from django.core.exceptions import ValidationError


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Show a service's ValidationError on `form`: per field where the form has it, above the form otherwise."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, messages in error.message_dict.items():
        form.add_error(name if name in form.fields else None, messages)
