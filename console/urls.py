"""The site's URL map: the console's pages, the management API under /api/v1/, its schema and docs, the admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from console import views

console_patterns = (
    [
        path("tokens/", views.token_list, name="token_list"),
        path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
        path("audit/", views.audit_list, name="audit_list"),
    ],
    "console",
)

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="registry:model_list"), name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("serving.urls")),
    path("models/", include("registry.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("", include(console_patterns)),
    path("api/", include("console.api.urls")),
    path("admin/", admin.site.urls),
]
