"""OpenAPI descriptions that drf-spectacular cannot infer by itself."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "console.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from /tokens/ or `manage.py create_token` (scopes: read, predict, "
                           "manage, admin)",
        }
