"""The landing page (/): a summary of the pipelines the user can see."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from pipeline import selectors


@login_required
def home(request):
    """The landing page after login: per pipeline, the open, won and lost deals the user can see."""
    return render(request, "home.html", {"summary": selectors.pipeline_summary(user=request.user)})
