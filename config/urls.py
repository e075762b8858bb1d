from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from accounts import settings_urls as account_settings
from config.api import api_not_found
from config.health import healthz
from forecasting import settings_urls as quota_settings
from pipeline import settings_urls as pipeline_settings
from pipeline.views.home import home

# One /settings/ menu over three apps: each app lists its own settings pages, and only here, above every app, are
# they put together in one namespace ("settings:pipelines", "settings:teams", "settings:quotas", ...).
settings_pages = [*pipeline_settings.urlpatterns, *account_settings.urlpatterns, *quota_settings.urlpatterns]

urlpatterns = [
    path("", home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("healthz", healthz, name="healthz"),
    path("", include("pipeline.urls")),
    path("dashboard/", include("forecasting.page_urls")),
    path("forecast/", include("forecasting.call_urls")),
    path("settings/", include((settings_pages, "settings"))),
    path("admin/", admin.site.urls),
    path("api/v1/", include("accounts.api.urls")),
    path("api/v1/", include("pipeline.api.urls")),
    path("api/v1/", include("forecasting.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="api-schema"),
    path(
        "api/docs/",
        # The split view serves its script as a file, so the docs work under the Content-Security-Policy.
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", permission_classes=[AllowAny]),
        name="api-docs",
    ),
    # Last: any other path under /api/ answers a JSON 404, not Django's HTML page.
    re_path(r"^api/", api_not_found),
]

# A database outage is a 503 that says so (pages and API), not a 500: see config/errors.py.
handler500 = "config.errors.server_error"
