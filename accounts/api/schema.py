"""drf-spectacular extensions for accounts; imported by `accounts.api.views` so that they register with the schema."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from accounts.api.authentication import BearerTokenAuthentication


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Describes the bearer tokens in the OpenAPI schema."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A personal API token: `crm_<prefix>.<secret>`."}
