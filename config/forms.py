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
        boxes = []
        for index, (option, label) in enumerate(self.choices):
            text = "" if option is None else str(option)
            box = {**attrs, "type": "checkbox", "name": name, "value": text}
            if base_id:
                box["id"] = f"{base_id}_{index}"
            if text in chosen:
                box["checked"] = True
            for_id = format_html(' for="{}"', box["id"]) if base_id else ""
            boxes.append(format_html("<div><label{}><input{}>\n {}</label></div>", for_id, flatatt(box), label))
        outer = flatatt({"id": base_id, "class": attrs.get("class")})  # flatatt leaves out a None
        return format_html("<div{}>{}</div>", outer, mark_safe("".join(boxes)))
