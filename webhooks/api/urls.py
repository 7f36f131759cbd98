"""Routes of the webhooks API, under /api/v1/."""

from django.urls import path

from webhooks.api import views

urlpatterns = [
    path("teams/<str:team>/webhooks/", views.WebhookListView.as_view(), name="webhook_list"),
    path("teams/<str:team>/webhooks/<int:webhook_id>/", views.WebhookDetailView.as_view(), name="webhook_detail"),
    path("teams/<str:team>/webhooks/<int:webhook_id>/deliveries/", views.DeliveryListView.as_view(),
         name="delivery_list"),
    path("teams/<str:team>/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/redeliver/",
         views.DeliveryRedeliverView.as_view(), name="delivery_redeliver"),
]
