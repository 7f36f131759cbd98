"""The serving console pages: the traffic panel, rollout controls, the dashboard and batch jobs."""

from django.urls import path

from serving import views
from serving.jobs import schedule_views
from serving.jobs import views as job_views
from serving.streams import views as stream_views

app_name = "serving"

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("models/<str:name>/traffic/", views.traffic_panel, name="traffic_panel"),
    path("models/<str:name>/jobs/", job_views.job_list, name="job_list"),
    path("models/<str:name>/jobs/<str:job_id>/", job_views.job_detail, name="job_detail"),
    path("models/<str:name>/jobs/<str:job_id>/cancel/", job_views.job_cancel, name="job_cancel"),
    path("models/<str:name>/jobs/<str:job_id>/output/", job_views.job_output, name="job_output"),
    path("models/<str:name>/schedules/", schedule_views.job_schedules, name="job_schedules"),
    path("models/<str:name>/schedules/<str:schedule>/<str:action>/", schedule_views.job_schedule_action,
         name="job_schedule_action"),
    path("models/<str:name>/streams/", stream_views.stream_bindings, name="stream_bindings"),
    path("models/<str:name>/streams/<str:binding>/<str:action>/", stream_views.stream_binding_action,
         name="stream_binding_action"),
    path("models/<str:name>/rollouts/start/", views.rollout_start, name="rollout_start"),
    path("models/<str:name>/rollouts/<int:rollout_id>/<str:action>/", views.rollout_action, name="rollout_action"),
]
