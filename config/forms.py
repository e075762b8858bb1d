"""What every app's browser forms share: a service's ValidationError shown on the form that sent the input, and a
<select> that long lists of choices can afford.

The pages of every app write through services that raise per-field ValidationErrors; this module imports no app,
so each of them may use it (as each API viewset uses `config.api`).
"""

from django import forms
from django.core.exceptions import ValidationError
from django.forms.utils import flatatt
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Show a service's ValidationError on `form`: per field where the form has it, above the form otherwise."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, messages in error.message_dict.items():
        form.add_error(name if name in form.fields else None, messages)


class PlainSelect(forms.Select):
    """Django's <select>, written out in Python. Django renders one template per option (and builds a dictionary of
    attributes for each first): the deal table's owner, team and stage choices, twice (filters and bulk form), took
    half of its page for an admin (docs/performance.md, "The deal table"). The same markup, but for whitespace."""

    def render(self, name, value, attrs=None, renderer=None):
        attrs = self.build_attrs(self.attrs, attrs)
        if self.allow_multiple_selected:
            attrs["multiple"] = True
        chosen = set(self.format_value(value))

        def options(choices) -> str:
            written = []
            for option, label in choices:
                if isinstance(label, list | tuple):  # a group of choices
                    written.append(f'<optgroup label="{escape(option)}">{options(label)}</optgroup>')
                    continue
                text = "" if option is None else str(option)
                selected = text in chosen and (self.allow_multiple_selected or not written_selected)
                if selected:
                    written_selected.append(text)
                written.append(
                    f'<option value="{escape(text)}"{" selected" if selected else ""}>{escape(label)}</option>'
                )
            return "".join(written)

        written_selected: list[str] = []
        return format_html('<select name="{}"{}>{}</select>', name, flatatt(attrs), mark_safe(options(self.choices)))


class PlainCheckboxes(forms.CheckboxSelectMultiple):
    """Django's list of check boxes, written out in Python as `PlainSelect` writes a <select>: a template per box made
    the deal table's column chooser (14 boxes) 1.2 ms of its page. The same markup, but for whitespace."""

    def render(self, name, value, attrs=None, renderer=None):
        attrs = self.build_attrs(self.attrs, attrs)
        base_id = attrs.pop("id", None)
        chosen = set(self.format_value(value))
        shared = flatatt({**attrs, "type": "checkbox", "name": name})
        boxes = []
        for index, (option, label) in enumerate(self.choices):
            text = "" if option is None else str(option)
            box_id = f' id="{escape(base_id)}_{index}"' if base_id else ""
            for_id = f' for="{escape(base_id)}_{index}"' if base_id else ""
            checked = " checked" if text in chosen else ""
            box = f'<input{shared} value="{escape(text)}"{box_id}{checked}>'
            boxes.append(f"<div><label{for_id}>{box}\n {escape(label)}</label></div>")
        outer = flatatt({"id": base_id, "class": attrs.get("class")})  # flatatt leaves out a None
        return mark_safe(f"<div{outer}>{''.join(boxes)}</div>")  # every value above is escaped


class PlainInput(forms.widgets.Input):
    """Django's <input>, written out in Python: its template (and the attributes' one it includes) took 0.1-0.2 ms an
    input, eight of them on the deal table's page. The same markup, but for an attribute whose value is None (left
    out here, as `flatatt` leaves it out)."""

    def render(self, name, value, attrs=None, renderer=None):
        value = self.format_value(value)
        shown = "" if value is None else f' value="{escape(value)}"'
        attrs = flatatt(self.build_attrs(self.attrs, attrs))
        return mark_safe(f'<input type="{escape(self.input_type)}" name="{escape(name)}"{shown}{attrs}>')


class PlainTextInput(PlainInput, forms.TextInput):
    pass


class PlainNumberInput(PlainInput, forms.NumberInput):
    pass


class PlainDateInput(PlainInput, forms.DateInput):
    pass


class PlainHiddenInput(PlainInput, forms.HiddenInput):
    pass
