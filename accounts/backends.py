from axes.backends import AxesStandaloneBackend


class LoginProtectionBackend(AxesStandaloneBackend):
    """django-axes' lockout check for logins that arrive with a request.

    A login without a request (a shell session, the test client's `login`) has no address or form to lock, and
    django-axes would refuse it outright; it goes on to the password check like any other.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
