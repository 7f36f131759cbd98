"""Routes of the registry API, under /api/v1/: models, their versions and aliases."""

from django.urls import path, re_path

from registry.api import views

app_name = "registry-api"

urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="model_list"),
    path("models/<str:name>/", views.ModelDetailView.as_view(), name="model_detail"),
    path("models/<str:name>/versions/", views.VersionListView.as_view(), name="version_list"),
    path("models/<str:name>/versions/<int:number>/", views.VersionDetailView.as_view(), name="version_detail"),
    # With or without the trailing slash, as aliases.
    re_path(r"^models/(?P<name>[^/]+)/versions/(?P<number>[0-9]{1,18})/artifact/?$",
            views.VersionArtifactView.as_view(), name="version_artifact"),
    re_path(r"^models/(?P<name>[^/]+)/versions/(?P<number>[0-9]{1,18})/card/?$",
            views.VersionCardView.as_view(), name="version_card"),
    path("models/<str:name>/aliases/", views.AliasListView.as_view(), name="alias_list"),
    # With or without the trailing slash: clients write both.
    re_path(r"^models/(?P<name>[^/]+)/aliases/(?P<alias>[^/]+)/?$", views.AliasDetailView.as_view(),
            name="alias_detail"),
]
