"""The site's URL map: the console's pages, the management API under /api/v1/, its schema and docs, the admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from console import approvals, audit_views, passwords, people, views

console_patterns = (
    [
        path("tokens/", views.token_list, name="token_list"),
        path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
        path("audit/", audit_views.audit_list, name="audit_list"),
        path("audit/export.<str:fmt>", audit_views.audit_export, name="audit_export"),
        path("audit/verify/", audit_views.audit_verify, name="audit_verify"),
        path("approvals/", approvals.approval_list, name="approval_list"),
        path("approvals/<int:rollout_id>/", approvals.approval_decide, name="approval_decide"),
        path("teams/", people.team_list, name="team_list"),
        path("teams/<str:name>/", people.team_detail, name="team_detail"),
        path("teams/<str:name>/members/<int:user_id>/role/", people.membership_update, name="membership_update"),
        path("teams/<str:name>/members/<int:user_id>/remove/", people.membership_delete, name="membership_delete"),
        path("people/", people.user_list, name="user_list"),
        path("people/<int:user_id>/<str:action>/", people.user_action, name="user_action"),
    ],
    "console",
)

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="registry:model_list"), name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Password reset by email (console/passwords.py); Django's views find each other by these names.
    path("password-reset/", passwords.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password-reset/<uidb64>/<token>/", passwords.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("password-reset/complete/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("", include("serving.urls")),
    path("models/", include("registry.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("", include(console_patterns)),
    path("api/", include("console.api.urls")),
    path("admin/", admin.site.urls),
]
