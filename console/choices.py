from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    ENGINEER = "engineer", "Engineer"


class Scope(models.TextChoices):
    READ = "read", "Read"
    PREDICT = "predict", "Predict"
    MANAGE = "manage", "Manage"
    ADMIN = "admin", "Admin"


ALL_SCOPES = [scope.value for scope in Scope]
