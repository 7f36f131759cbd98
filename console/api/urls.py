"""The management API under /api/: the v1 routes of every app, who the caller is, tokens, the
audit log, and the OpenAPI schema with its docs page."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from console.api import approvals, views

urlpatterns = [
    path("v1/", include("registry.api.urls")),
    path("v1/", include("serving.api.urls")),
    path("v1/", include("webhooks.api.urls")),
    path("v1/whoami/", views.WhoamiView.as_view(), name="whoami"),
    path("v1/tokens/", views.TokenListView.as_view(), name="token_list"),
    path("v1/tokens/<int:token_id>/", views.TokenDetailView.as_view(), name="token_detail"),
    path("v1/audit/", views.AuditEventListView.as_view(), name="audit_list"),
    path("v1/approvals/", approvals.ApprovalListView.as_view(), name="approval_list"),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[]), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[]), name="api_docs"),
]
