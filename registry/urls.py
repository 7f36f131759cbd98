"""The registry's console pages: models, versions, uploads, aliases."""

from django.urls import path

from registry import views

app_name = "registry"

urlpatterns = [
    path("", views.model_list, name="model_list"),
    path("new/", views.model_create, name="model_create"),
    path("<str:name>/", views.model_detail, name="model_detail"),
    path("<str:name>/upload/", views.version_upload, name="version_upload"),
    path("<str:name>/compare/", views.version_compare, name="version_compare"),
    path("<str:name>/versions/<int:number>/", views.version_detail, name="version_detail"),
    path("<str:name>/versions/<int:number>/card/", views.version_card, name="version_card"),
    path("<str:name>/versions/<int:number>/artifact/", views.version_artifact, name="version_artifact"),
    path("<str:name>/versions/<int:number>/status/", views.version_status, name="version_status"),
    path("<str:name>/aliases/", views.alias_set, name="alias_set"),
]
