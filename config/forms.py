"""What every app's browser forms share: a service's ValidationError shown on the form that sent the input, and a
<select> that long lists of choices can afford.

The pages of every app write through services that raise per-field ValidationErrors; this module imports no app,
so each of them may use it (as each API viewset uses `config.api`).
"""

import html

from django import forms
from django.core.exceptions import ValidationError
from django.utils.safestring import mark_safe


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Show a service's ValidationError on `form`: per field where the form has it, above the form otherwise."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, messages in error.message_dict.items():
        form.add_error(name if name in form.fields else None, messages)


def _escaped(value) -> str:
    """`conditional_escape`, with the standard library's `html.escape`: Django's `escape` is wrapped to accept lazy
    strings, a check of its arguments that cost more than the escaping (0.5 ms of the deal table's 130 options)."""
    return value.__html__() if hasattr(value, "__html__") else html.escape(str(value))


def _attributes(attrs: dict) -> str:
    """`flatatt`'s markup, escaped by `_escaped`: the pairs sorted, then the true booleans; None and False left out."""
    pairs = sorted((name, value) for name, value in attrs.items() if value is not None and not isinstance(value, bool))
    flags = sorted(name for name, value in attrs.items() if value is True)
    return "".join(f' {_escaped(name)}="{_escaped(value)}"' for name, value in pairs) + "".join(
        f" {_escaped(name)}" for name in flags
    )


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
                    written.append(f'<optgroup label="{_escaped(option)}">{options(label)}</optgroup>')
                    continue
                text = "" if option is None else str(option)
                selected = text in chosen and (self.allow_multiple_selected or not written_selected)
                if selected:
                    written_selected.append(text)
                written.append(
                    f'<option value="{_escaped(text)}"{" selected" if selected else ""}>{_escaped(label)}</option>'
                )
            return "".join(written)

        written_selected: list[str] = []
        # Every value is escaped above.
        return mark_safe(f'<select name="{_escaped(name)}"{_attributes(attrs)}>{options(self.choices)}</select>')


class PlainCheckboxes(forms.CheckboxSelectMultiple):
    """Django's list of check boxes, written out in Python as `PlainSelect` writes a <select>: a template per box made
    the deal table's column chooser (14 boxes) 1.2 ms of its page. The same markup, but for whitespace."""

    def render(self, name, value, attrs=None, renderer=None):
        attrs = self.build_attrs(self.attrs, attrs)
        base_id = attrs.pop("id", None)
        chosen = set(self.format_value(value))
        shared = _attributes({**attrs, "type": "checkbox", "name": name})
        boxes = []
        for index, (option, label) in enumerate(self.choices):
            text = "" if option is None else str(option)
            box_id = f' id="{_escaped(base_id)}_{index}"' if base_id else ""
            for_id = f' for="{_escaped(base_id)}_{index}"' if base_id else ""
            checked = " checked" if text in chosen else ""
            box = f'<input{shared} value="{_escaped(text)}"{box_id}{checked}>'
            boxes.append(f"<div><label{for_id}>{box}\n {_escaped(label)}</label></div>")
        outer = _attributes({"id": base_id, "class": attrs.get("class")})  # `_attributes` leaves out a None
        return mark_safe(f"<div{outer}>{''.join(boxes)}</div>")  # every value above is escaped


class PlainInput(forms.widgets.Input):
    """Django's <input>, written out in Python: its template (and the attributes' one it includes) took 0.1-0.2 ms an
    input, eight of them on the deal table's page. The same markup, but for an attribute whose value is None (left
    out here, as `flatatt` leaves it out)."""

    def render(self, name, value, attrs=None, renderer=None):
        value = self.format_value(value)
        shown = "" if value is None else f' value="{_escaped(value)}"'
        attrs = _attributes(self.build_attrs(self.attrs, attrs))
        return mark_safe(f'<input type="{_escaped(self.input_type)}" name="{_escaped(name)}"{shown}{attrs}>')


class PlainTextInput(PlainInput, forms.TextInput):
    pass


class PlainNumberInput(PlainInput, forms.NumberInput):
    pass


class PlainDateInput(PlainInput, forms.DateInput):
    pass


class PlainHiddenInput(PlainInput, forms.HiddenInput):
    pass
