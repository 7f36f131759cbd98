"""Routes of the serving API, under /api/v1/: deployments, workers, rollouts, metrics, batch jobs and
their schedules, stream bindings."""

from django.urls import path

from serving.api import jobs, schedules, streams, views

urlpatterns = [
    path("deployments/<str:name>/", views.DeploymentView.as_view(), name="deployment_detail"),
    path("workers/", views.WorkerListView.as_view(), name="worker_list"),
    path("models/<str:name>/rollouts/", views.RolloutListView.as_view(), name="rollout_list"),
    path("models/<str:name>/rollouts/<int:rollout_id>/", views.RolloutDetailView.as_view(), name="rollout_detail"),
    path("models/<str:name>/rollouts/<int:rollout_id>/<str:action>/", views.RolloutActionView.as_view(),
         name="rollout_action"),
    path("models/<str:name>/metrics/", views.LiveMetricsView.as_view(), name="live_metrics"),
    path("models/<str:name>/jobs/", jobs.JobListView.as_view(), name="job_list"),
    path("models/<str:name>/jobs/<str:job_id>/", jobs.JobDetailView.as_view(), name="job_detail"),
    path("models/<str:name>/jobs/<str:job_id>/cancel/", jobs.JobCancelView.as_view(), name="job_cancel"),
    path("models/<str:name>/jobs/<str:job_id>/output/", jobs.JobOutputView.as_view(), name="job_output"),
    path("models/<str:name>/schedules/", schedules.JobScheduleListView.as_view(), name="schedule_list"),
    path("models/<str:name>/schedules/<str:schedule>/", schedules.JobScheduleDetailView.as_view(),
         name="schedule_detail"),
    path("models/<str:name>/schedules/<str:schedule>/<str:action>/", schedules.JobScheduleActionView.as_view(),
         name="schedule_action"),
    path("models/<str:name>/streams/", streams.StreamBindingListView.as_view(), name="stream_list"),
    path("models/<str:name>/streams/<str:binding>/", streams.StreamBindingDetailView.as_view(),
         name="stream_detail"),
    path("models/<str:name>/streams/<str:binding>/<str:action>/", streams.StreamBindingActionView.as_view(),
         name="stream_action"),
    path("models/<str:name>/metrics/history/", views.MetricHistoryView.as_view(), name="metric_history"),
]
