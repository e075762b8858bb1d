"""The Content-Security-Policy header (Django 5.2 has none built in; Django 6 does), and who the client is behind
the proxies we trust."""

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Send `settings.CONTENT_SECURITY_POLICY` with every response, or the relaxed policy for the paths listed.

    The app's pages need no inline script or style. The Django admin and the Swagger UI set inline style
    attributes, so under `CSP_RELAXED_STYLE_PATHS` styles may be inline; scripts never may.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            relaxed = request.path.startswith(tuple(settings.CSP_RELAXED_STYLE_PATHS))
            response["Content-Security-Policy"] = (
                settings.CONTENT_SECURITY_POLICY_RELAXED_STYLE if relaxed else settings.CONTENT_SECURITY_POLICY
            )
        return response


def client_address(request) -> str:
    """The client's address: `REMOTE_ADDR`, or with `TRUSTED_PROXY_COUNT` proxies in front, the address the
    outermost trusted proxy saw (counted from the right of `X-Forwarded-For`, which a client can prefill but not
    shorten)."""
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        addresses = [address.strip() for address in forwarded.split(",") if address.strip()]
        if addresses:
            return addresses[-min(proxies, len(addresses))]
    return request.META.get("REMOTE_ADDR", "")
