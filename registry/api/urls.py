from django.urls import path

from registry.api import views

app_name = "registry-api"

urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="model_list"),
    path("models/<str:name>/", views.ModelDetailView.as_view(), name="model_detail"),
    path("models/<str:name>/versions/", views.VersionListView.as_view(), name="version_list"),
    path("models/<str:name>/versions/<int:number>/", views.VersionDetailView.as_view(), name="version_detail"),
    path("models/<str:name>/aliases/", views.AliasListView.as_view(), name="alias_list"),
    path("models/<str:name>/aliases/<str:alias>", views.AliasDetailView.as_view(), name="alias_detail"),
    path("models/<str:name>/aliases/<str:alias>/", views.AliasDetailView.as_view()),
]
