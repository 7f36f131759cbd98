"""Routes of the serving API, under /api/v1/: deployments, workers, rollouts and metrics."""

from django.urls import path

from serving.api import views

urlpatterns = [
    path("deployments/<str:name>/", views.DeploymentView.as_view(), name="deployment_detail"),
    path("workers/", views.WorkerListView.as_view(), name="worker_list"),
    path("models/<str:name>/rollouts/", views.RolloutListView.as_view(), name="rollout_list"),
    path("models/<str:name>/rollouts/<int:rollout_id>/", views.RolloutDetailView.as_view(), name="rollout_detail"),
    path("models/<str:name>/rollouts/<int:rollout_id>/<str:action>/", views.RolloutActionView.as_view(),
         name="rollout_action"),
    path("models/<str:name>/metrics/", views.LiveMetricsView.as_view(), name="live_metrics"),
    path("models/<str:name>/metrics/history/", views.MetricHistoryView.as_view(), name="metric_history"),
]
