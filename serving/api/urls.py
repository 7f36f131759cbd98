from django.urls import path

from serving.api import views

urlpatterns = [
    path("deployments/<str:name>/", views.DeploymentView.as_view(), name="deployment_detail"),
    path("workers/", views.WorkerListView.as_view(), name="worker_list"),
]
