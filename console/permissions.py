"""The API's one permission: authenticated, with the token scope the request needs."""

from typing import Any

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from console.models import ApiToken

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def required_scope(request: Request, view: Any) -> str:
    """The scope a request needs: the view's `scopes` by method ("": any valid token), else
    read for safe methods and manage for the rest."""
    scopes: dict[str, str] = getattr(view, "scopes", {})
    if request.method in scopes:
        return scopes[request.method]
    return "read" if request.method in SAFE_METHODS else "manage"


class HasScope(permissions.BasePermission):
    """Authenticated, and (for token callers) holding the scope the request needs.
    Session users act with every scope; their roles are checked where the object is known."""

    def has_permission(self, request: Request, view: Any) -> bool:
        """Raise rather than return False, so the caller reads why: not signed in, a token without
        the scope, or not an admin."""
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated("authentication required: send 'Authorization: Bearer <token>'")
        scope = required_scope(request, view)
        token = request.auth
        if scope and isinstance(token, ApiToken) and not token.has_scope(scope):
            raise exceptions.PermissionDenied(f"token lacks the '{scope}' scope")
        if scope == "admin" and not request.user.is_superuser:
            raise exceptions.PermissionDenied("admin role required")
        return True
