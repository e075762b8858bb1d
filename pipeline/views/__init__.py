"""Browser pages of the pipeline, a module per page family: thin views that read through `pipeline.selectors` and
write through `pipeline.services`. htmx requests get partials (templates/pipeline/partials/); plain requests get whole
pages, so every form also works without JavaScript. pipeline/urls.py routes each module's views.
"""
