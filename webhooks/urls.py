"""The console's webhook pages."""

from django.urls import path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("", views.team_list, name="team_list"),
    path("<str:team>/", views.webhook_list, name="webhook_list"),
    path("<str:team>/deliveries/", views.delivery_list, name="delivery_list"),
    path("<str:team>/deliveries/<int:delivery_id>/redeliver/", views.delivery_redeliver, name="delivery_redeliver"),
    path("<str:team>/<int:webhook_id>/<str:action>/", views.webhook_action, name="webhook_action"),
]
