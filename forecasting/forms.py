"""Browser forms of the forecasting pages: they read what was typed; the rules are the services'."""

from django import forms


class CallForm(forms.Form):
    """A number for the forecast call (a submission or an adjustment) and its note; whether the note is required,
    the amount allowed and the period still open is `forecasting.services`' to say."""

    amount = forms.CharField(max_length=32, error_messages={"required": "Give an amount, such as 125000.00."})
    note = forms.CharField(max_length=2000, required=False)
