"""Set up the load test's users: a personal API token for each demo rep and manager.

Run by the runner as `python -m tools.loadtest.prepare CREDENTIALS.json` with the dedicated database in
`DATABASE_URL`, once the demo data is seeded and the broker purged; writes who the virtual users log in as
(username, password, role, token) to the JSON file.
"""

import json
import sys
from pathlib import Path

import django


def main(path: str) -> None:
    django.setup()
    from accounts.models import Role, User
    from accounts.services import create_api_token
    from forecasting.services import clear_pending_recompute
    from tools.generators.demo import demo_usernames
    from tools.generators.vocabulary import DEMO_PASSWORD

    users = User.objects.filter(username__in=demo_usernames(), role__in=[Role.REP, Role.MANAGER], is_active=True)
    credentials = []
    for user in users.order_by("role", "username"):
        # Through the service, as a user in the settings page would: the token is stored hashed, like any other.
        _token, raw_token = create_api_token(user=user, name="load test")
        credentials.append(
            {
                "username": user.username,
                "password": DEMO_PASSWORD,
                "role": user.role,
                "user_id": user.pk,
                "token": raw_token,
            }
        )
    Path(path).write_text(json.dumps(credentials))
    # The seeding queued a recompute that the purge dropped: without this its mark would hold back the recomputes
    # the run's own changes ask for.
    clear_pending_recompute()
    print(f"{len(credentials)} load-test users with API tokens: {', '.join(c['username'] for c in credentials)}")


if __name__ == "__main__":
    main(sys.argv[1])
