"""`GET /api/v1/approvals/`: the approval inbox over the API (admins), the same list as the
console's /approvals/ page. Deciding is the rollout's own actions (`…/rollouts/{id}/approve/`,
`…/rollback/`)."""

from django.db.models import QuerySet
from rest_framework import generics, serializers

from serving.api.serializers import RolloutSerializer
from serving.approvals import awaiting_approval
from serving.models import Rollout


class ApprovalSerializer(serializers.Serializer):
    """A rollout awaiting approval (the rollouts API's own shape), its model's team, and when it
    began to wait."""

    rollout = RolloutSerializer(source="*", read_only=True)
    team = serializers.CharField(source="model.team.name", read_only=True)
    waiting_since = serializers.DateTimeField(read_only=True, allow_null=True)


class ApprovalListView(generics.ListAPIView):
    """Every rollout awaiting an admin's approval, across teams, the longest waiting first (admins only)."""

    serializer_class = ApprovalSerializer
    scopes = {"GET": "admin"}

    def get_queryset(self) -> QuerySet[Rollout]:
        """serving.approvals.awaiting_approval, with each rollout's timeline."""
        return awaiting_approval().prefetch_related("events")
