from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from pipeline.selectors import pipeline_summary


@login_required
def home(request):
    """The landing page after login: what the user can see of the pipeline, until the board arrives."""
    return render(request, "home.html", {"summary": pipeline_summary(user=request.user)})
