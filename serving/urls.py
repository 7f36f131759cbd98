"""The serving console pages: the traffic panel, rollout controls and the dashboard."""

from django.urls import path

from serving import views

app_name = "serving"

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("models/<str:name>/traffic/", views.traffic_panel, name="traffic_panel"),
    path("models/<str:name>/rollouts/start/", views.rollout_start, name="rollout_start"),
    path("models/<str:name>/rollouts/<int:rollout_id>/<str:action>/", views.rollout_action, name="rollout_action"),
]
