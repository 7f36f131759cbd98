"""The console API's shapes: API tokens, audit events, and who the caller is."""

from rest_framework import serializers

from console.choices import Scope
from console.models import ApiToken, AuditEvent, Membership


class TokenSerializer(serializers.ModelSerializer):
    """A token as listed: its name, prefix, scopes, models and dates, never its value."""

    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "user", "scopes", "model_names", "created_at", "expires_at",
                  "last_used_at", "revoked_at"]
        read_only_fields = fields


class TokenCreateSerializer(serializers.Serializer):
    """A new token: its scopes, the models it is limited to (none: every model you see), its expiry."""

    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), allow_empty=False)
    model_names = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class TokenCreatedSerializer(TokenSerializer):
    """A token just created, with its raw value: the only time it is shown."""

    token = serializers.CharField(read_only=True, help_text="Shown once; store it now")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer):
    """An audit event with the states before and after, and its link in the hash chain."""

    actor = serializers.CharField(source="actor_label")

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor", "actor_username", "actor_token_name", "action", "object_type",
                  "object_id", "object_repr", "before", "after", "client_address", "request_id",
                  "prev_hash", "hash"]
        read_only_fields = fields


class MembershipSerializer(serializers.ModelSerializer):
    """A team the caller belongs to, and the caller's role in it."""

    name = serializers.CharField(source="team.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["name", "role"]
        read_only_fields = fields


class CallerTokenSerializer(serializers.ModelSerializer):
    """The token a call came with: its name, scopes and expiry (never its value)."""

    class Meta:
        model = ApiToken
        fields = ["name", "scopes", "expires_at"]
        read_only_fields = fields


class WhoamiSerializer(serializers.Serializer):
    """Who the caller is: the person, their teams and roles, and the token used (null in a session)."""

    username = serializers.CharField(read_only=True)
    is_staff = serializers.BooleanField(read_only=True)
    teams = MembershipSerializer(many=True, read_only=True)
    token = CallerTokenSerializer(read_only=True, allow_null=True)
