"""Team roles and API token scopes."""

from django.db import models


class Role(models.TextChoices):
    """A member's role in a team: viewers see its models, engineers also change them."""

    VIEWER = "viewer", "Viewer"
    ENGINEER = "engineer", "Engineer"


class Scope(models.TextChoices):
    """What an API token may do; admin implies every other scope, manage implies read."""

    READ = "read", "Read"
    PREDICT = "predict", "Predict"
    MANAGE = "manage", "Manage"
    PRIORITY = "priority", "Priority (requests ahead of the default)"
    METRICS = "metrics", "Metrics (every model's /metrics series; admins only)"
    ADMIN = "admin", "Admin"


ALL_SCOPES = [scope.value for scope in Scope]
