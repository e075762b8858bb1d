"""The `{% url %}` tag of every template (a builtin, `TEMPLATES["OPTIONS"]["builtins"]`), its reversals kept per
process: Django's tag reverses the name on every render, 30-50 µs each through the resolver's per-language
dictionaries, and the top bar alone has thirteen (0.6 ms of every page; docs/performance.md, "The deal table").

A reversal is a function of the name, the arguments, the current application, the URL configuration and the script
prefix, all in the key; the patterns themselves are fixed for the process. Only ints and strings are kept as
arguments: a model instance's URL is made from its `str()`, which is not what it hashes by.
"""

from functools import lru_cache

from django import template
from django.template.defaulttags import URLNode
from django.template.defaulttags import url as django_url
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape

register = template.Library()


@lru_cache(maxsize=2048)
def _reversed(view_name: str, args: tuple, kwargs: tuple, current_app: str | None, urlconf, prefix: str) -> str:
    # `prefix` is in the key only: `reverse` reads the script prefix of the thread, the same one.
    return reverse(view_name, urlconf=urlconf, args=args, kwargs=dict(kwargs), current_app=current_app)


def kept_reverse(view_name: str, *args: int | str) -> str:
    """`reverse(view_name, args=args)`, kept like the tag's: for code that writes many links to a few routes
    (the dashboard's drill-down links, 390 to one route)."""
    return _reversed(view_name, args, (), None, get_urlconf(), get_script_prefix())


class _KeptURLNode(URLNode):
    def render(self, context):
        args = tuple(arg.resolve(context) for arg in self.args)
        kwargs = tuple(sorted((name, value.resolve(context)) for name, value in self.kwargs.items()))
        view_name = self.view_name.resolve(context)
        if not isinstance(view_name, str) or any(type(v) not in (int, str) for v in (*args, *dict(kwargs).values())):
            return super().render(context)
        # The current application as Django's tag finds it.
        try:
            current_app = context.request.current_app
        except AttributeError:
            try:
                current_app = context.request.resolver_match.namespace
            except AttributeError:
                current_app = None
        url = ""
        try:
            url = _reversed(view_name, args, kwargs, current_app, get_urlconf(), get_script_prefix())
        except NoReverseMatch:
            if self.asvar is None:
                raise
        if self.asvar:
            context[self.asvar] = url
            return ""
        return conditional_escape(url) if context.autoescape else url


@register.tag
def url(parser, token):
    """Django's `{% url %}`, with its reversals kept (see above)."""
    node = django_url(parser, token)
    return _KeptURLNode(node.view_name, node.args, node.kwargs, node.asvar)
