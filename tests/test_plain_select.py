"""`config.forms.PlainSelect`, `PlainCheckboxes` and the plain inputs write the markup Django's own widgets render from
their templates (whitespace between tags and the order of attributes aside), for plain choices, groups, a selected
value, several, none, and text that needs escaping."""

from datetime import date
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django import forms
from django.utils.translation import gettext_lazy

from accounts.models import User
from config.forms import (
    PlainCheckboxes,
    PlainDateInput,
    PlainHiddenInput,
    PlainNumberInput,
    PlainSelect,
    PlainTextInput,
)
from pipeline.forms import BoardFilterForm, CustomerFilterForm, DealTableForm, LeadFilterForm
from tests.factories import make_user

# A lazy label as model choices have, and an apostrophe (escaped too).
CHOICES = [
    ("", "Everyone"),
    (1, "Ann & Bob"),
    ("2", '"Quoted" <b>'),
    ("Group", [("3", "Three"), ("4", "Four")]),
    ("5", gettext_lazy("Rep's <lazy> label")),
]


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
    assert ">Rep&#x27;s &lt;lazy&gt; label</option>" in written


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


@pytest.mark.parametrize(
    ("plain_class", "django_class", "value"),
    [
        (PlainTextInput, forms.TextInput, 'Ann & "Bob" <b>'),
        (PlainTextInput, forms.TextInput, None),
        (PlainTextInput, forms.TextInput, ""),
        (PlainNumberInput, forms.NumberInput, Decimal("12.50")),
        (PlainDateInput, forms.DateInput, date(2026, 12, 6)),
        (PlainHiddenInput, forms.HiddenInput, "q=1&col=stage"),
    ],
)
def test_plain_inputs_write_what_django_inputs_render(plain_class, django_class, value):
    attrs = {"class": "pick", "type": "search"} if plain_class is PlainTextInput else {"class": "pick"}
    plain, django_widget = plain_class(attrs=dict(attrs)), django_class(attrs=dict(attrs))
    extra = {"id": "id_q", "required": True, "disabled": False, "placeholder": "Name <x>"}
    written = plain.render("q", value, dict(extra))
    assert _tags(written) == _tags(django_widget.render("q", value, dict(extra)))
    assert written.count("type=") == 1


@pytest.mark.django_db
def test_each_search_box_is_one_input_of_type_search():
    """It was `type="text"` and `type="search"` on one input: a browser keeps the first, so the search styles (a wider
    box, the whole row on a phone) never applied."""
    user = make_user(username="ann")
    forms_with_search = [
        DealTableForm(user=user),
        BoardFilterForm(user=user),
        LeadFilterForm(user=user),
        CustomerFilterForm(placeholder="Name"),
    ]
    for form in forms_with_search:
        written = str(form["q"])
        assert written.startswith('<input type="search" name="q"'), written
        assert written.count("type=") == 1, written
