"""`Authorization: Bearer <token>` with personal API tokens (SPEC §4), and the throttling of failed attempts (§7)."""

from axes.helpers import get_client_ip_address
from rest_framework import authentication, exceptions, status

from accounts.exceptions import TokenAttemptsRefused
from accounts.services import authenticate_api_token, record_failed_token_attempt


class TokenAttemptsThrottled(exceptions.APIException):
    """429: too many failed token attempts from the client's address; `Retry-After` says how long to wait."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "token_attempts_refused"

    def __init__(self, refused: TokenAttemptsRefused):
        seconds = f"{refused.retry_after} second{'' if refused.retry_after == 1 else 's'}"
        if refused.locked:
            detail = f"Too many failed token attempts from your address: token authentication is locked for {seconds}."
        else:
            detail = f"Too many failed token attempts from your address: wait {seconds} before trying again."
        super().__init__(detail)
        # DRF's exception handler turns `wait` into the Retry-After header.
        self.wait = refused.retry_after


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates a request carrying a personal API token; a revoked, expired or unknown token is a 401.

    Failures are counted per client address (the one django-axes sees, so `TRUSTED_PROXY_COUNT` applies): after a
    few, the address is answered 429 with `Retry-After` for a while, then locked out (see
    `accounts.services.record_failed_token_attempt`). `request.auth` is the `ApiToken`, so that throttling can
    count each token separately.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        # None when the server cannot tell (no REMOTE_ADDR): such requests are not counted, for want of an address.
        address = get_client_ip_address(request._request) or None
        try:
            return self._authenticate(header, address)
        except TokenAttemptsRefused as refused:
            raise TokenAttemptsThrottled(refused) from refused

    def _authenticate(self, header: list[bytes], address: str | None):
        try:
            raw_token = header[1].decode("ascii") if len(header) == 2 else None
        except UnicodeDecodeError:
            raw_token = None
        if raw_token is None:
            if address is not None:
                record_failed_token_attempt(address=address)
            if len(header) != 2:
                raise exceptions.AuthenticationFailed("The Authorization header must be `Bearer <token>`.")
            raise exceptions.AuthenticationFailed("Invalid token.")
        token = authenticate_api_token(raw_token, address=address)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'
