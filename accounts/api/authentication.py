"""`Authorization: Bearer <token>` with personal API tokens (SPEC §4)."""

from rest_framework import authentication, exceptions

from accounts.services import authenticate_api_token


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates a request carrying a personal API token; a revoked, expired or unknown token is a 401.

    `request.auth` is the `ApiToken`, so that throttling can count each token separately.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be `Bearer <token>`.")
        try:
            raw_token = header[1].decode("ascii")
        except UnicodeDecodeError as error:
            raise exceptions.AuthenticationFailed("Invalid token.") from error
        token = authenticate_api_token(raw_token)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'
