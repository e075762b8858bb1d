"""`config.forms.PlainSelect` writes the markup Django's own <select> renders from its templates (whitespace between
tags aside), for plain choices, groups, a selected value, several, none, and text that needs escaping."""

from html.parser import HTMLParser

import pytest
from django import forms

from accounts.models import User
from config.forms import PlainCheckboxes, PlainSelect
from tests.factories import make_user

CHOICES = [("", "Everyone"), (1, "Ann & Bob"), ("2", '"Quoted" <b>'), ("Group", [("3", "Three"), ("4", "Four")])]


class _Markup(HTMLParser):
    """The elements, attributes (in any order) and text of some HTML, whitespace between tags aside."""

    def __init__(self, html: str):
        super().__init__()
        self.parts = []
        self.feed(str(html))

    def handle_starttag(self, tag, attrs):
        self.parts.append((tag, sorted(attrs, key=lambda pair: pair[0])))

    def handle_endtag(self, tag):
        self.parts.append(f"/{tag}")

    def handle_data(self, data):
        if data.strip():
            self.parts.append(data)


def _tags(html: str) -> list:
    return _Markup(html).parts


@pytest.mark.parametrize("value", [None, "", "1", 2, "3", ["1", "4"], "missing"])
@pytest.mark.parametrize("multiple", [False, True])
def test_plain_select_writes_what_django_select_renders(value, multiple):
    django_widget = (forms.SelectMultiple if multiple else forms.Select)(choices=CHOICES, attrs={"class": "pick"})
    plain = PlainSelect(choices=CHOICES, attrs={"class": "pick"})
    plain.allow_multiple_selected = multiple
    attrs = {"id": "id_owner", "required": True, "disabled": False}
    written = plain.render("owner", value, attrs)
    assert _tags(written) == _tags(django_widget.render("owner", value, attrs))
    assert "Ann &amp; Bob" in written and "&quot;Quoted&quot; &lt;b&gt;" in written


@pytest.mark.django_db
def test_plain_select_of_a_model_choice_field_selects_the_instance():
    users = [make_user(username=name) for name in ("ann", "bob")]

    def owner_form(widget):
        class OwnerForm(forms.Form):
            owner = forms.ModelChoiceField(User.objects.order_by("username"), empty_label="Everyone", widget=widget)

        return OwnerForm({"owner": str(users[1].pk)})["owner"]

    plain = owner_form(PlainSelect)
    assert f'<option value="{users[1].pk}" selected>bob</option>' in str(plain)
    assert _tags(plain) == _tags(owner_form(forms.Select))


@pytest.mark.parametrize("value", [None, [], ["1"], ["1", "2"], ["missing"]])
@pytest.mark.parametrize("attrs", [{"id": "id_col"}, {}])
def test_plain_checkboxes_write_what_django_checkbox_select_multiple_renders(value, attrs):
    choices = [(1, "Ann & Bob"), ("2", '"Quoted" <b>'), ("3", "Three")]
    django_widget = forms.CheckboxSelectMultiple(choices=choices, attrs={"class": "pick"})
    plain = PlainCheckboxes(choices=choices, attrs={"class": "pick"})
    written = plain.render("col", value, dict(attrs))
    assert _tags(written) == _tags(django_widget.render("col", value, dict(attrs)))
    assert written.count(" checked") == len([one for one in value or [] if one in ("1", "2")])
