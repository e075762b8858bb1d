"""`{% url %}` of every template (`config.templating`): what Django's own tag writes, its reversals kept per process
under everything they depend on."""

import pytest
from django.template import Context, Engine, Template
from django.urls import NoReverseMatch, reverse, set_script_prefix

from config import templating
from pipeline.templatetags.crm import url_of


def rendered(source: str, **context) -> str:
    return Template(source).render(Context(context))


def djangos(source: str, **context) -> str:
    """The same template under an engine without our builtin: Django's own `{% url %}`."""
    return Engine().from_string(source).render(Context(context))


@pytest.mark.parametrize(
    "source, context",
    [
        ("{% url 'pipeline:deal_table' %}", {}),
        ("{% url 'pipeline:deal' 42 %}", {}),
        ("{% url 'pipeline:deal' pk %}", {"pk": 7}),
        ("{% url 'pipeline:deal' pk=pk %}", {"pk": "9"}),
        ("{% url name pipeline stage %}", {"name": "pipeline:board_column_more", "pipeline": 3, "stage": 4}),
        ("{% url 'pipeline:deal_table' as link %}[{{ link }}]", {}),
        ("{% url 'no:such' as link %}[{{ link }}]", {}),
    ],
)
def test_the_tag_writes_what_djangos_writes(source, context):
    assert rendered(source, **context) == djangos(source, **context)


def test_a_reversal_is_kept_once_and_reused():
    templating._reversed.cache_clear()
    for pk in (5, 5, 6):
        assert rendered("{% url 'pipeline:deal' pk %}", pk=pk) == reverse("pipeline:deal", args=[pk])
    assert templating._reversed.cache_info().hits == 1 and templating._reversed.cache_info().currsize == 2


def test_the_script_prefix_is_part_of_the_key():
    assert rendered("{% url 'pipeline:deal_table' %}") == "/deals/"
    set_script_prefix("/crm/")
    try:
        assert rendered("{% url 'pipeline:deal_table' %}") == "/crm/deals/"
    finally:
        set_script_prefix("/")
    assert rendered("{% url 'pipeline:deal_table' %}") == "/deals/"


def test_an_unknown_name_still_raises():
    with pytest.raises(NoReverseMatch):
        rendered("{% url 'no:such' %}")


def test_an_argument_that_is_not_an_int_or_a_string_is_reversed_every_time(org):
    # A model instance is written into the URL by its str(), which is not what it hashes by: never a key.
    templating._reversed.cache_clear()
    user = org.rep
    assert rendered("{% url 'pipeline:deal' user.pk %}", user=user) == reverse("pipeline:deal", args=[user.pk])
    with pytest.raises(NoReverseMatch):  # "rep" is no int: as Django's tag, not a kept answer for the pk
        rendered("{% url 'pipeline:deal' user %}", user=user)
    assert templating._reversed.cache_info().currsize == 1


def test_url_of_writes_the_script_prefix_of_the_request():
    # `url_of` (a card's or a row's link) keeps its pattern per URL conf and script prefix, as the tag does.
    assert url_of(42, "pipeline:deal") == reverse("pipeline:deal", args=[42]) == "/deals/42/"
    set_script_prefix("/crm/")
    try:
        assert url_of(42, "pipeline:deal") == "/crm/deals/42/"
    finally:
        set_script_prefix("/")
    assert url_of(43, "pipeline:deal") == "/deals/43/"


def test_kept_reverse_is_django_reverse_kept():
    templating._reversed.cache_clear()
    assert templating.kept_reverse("pipeline:deal", 42) == reverse("pipeline:deal", args=[42])
    assert templating.kept_reverse("pipeline:deal_table") == reverse("pipeline:deal_table")
    assert templating.kept_reverse("pipeline:deal_table") == "/deals/"
    assert templating._reversed.cache_info().hits == 1
    set_script_prefix("/crm/")
    try:
        assert templating.kept_reverse("pipeline:deal_table") == "/crm/deals/"
    finally:
        set_script_prefix("/")
