"""The accounts' settings pages: teams (admins) and everyone's own API tokens.

config.urls puts them under /settings/, in the "settings" namespace, beside those of pipeline and forecasting.
"""

from django.urls import path

from accounts import settings_views as views

urlpatterns = [
    path("teams/", views.team_list, name="teams"),
    path("teams/<int:pk>/", views.team_edit, name="team"),
    path("tokens/", views.token_list, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token_revoke"),
]
