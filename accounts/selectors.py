"""The visibility rule of SPEC §2, in one place.

Every read path (pages, API, exports, metrics) asks these functions whose records a user may see or edit;
`pipeline.selectors.visible_deals` and friends apply them to each kind of record.
"""

from django.conf import settings
from django.db.models import Q, QuerySet

from accounts.models import ApiToken, Role, Team, User


def sees_every_owner(user: User) -> bool:
    """Whether `user` sees and changes everyone's records (an active admin): the owners below are then None."""
    return user.is_active and user.is_admin


def _owners(user: User, *, editing: bool) -> QuerySet | None:
    if not user.is_active:
        return User.objects.none().values("pk")
    if sees_every_owner(user):
        return None
    if user.role == Role.MANAGER:
        return User.objects.filter(Q(team__managers=user) | Q(pk=user.pk)).values("pk")
    if not editing and settings.REP_VISIBILITY == "team" and user.team_id:
        return User.objects.filter(Q(team_id=user.team_id) | Q(pk=user.pk)).values("pk")
    return User.objects.filter(pk=user.pk).values("pk")


def owners_visible_to(user: User) -> QuerySet | None:
    """Ids of users whose records `user` may see, as a subquery; None means everyone's (an admin).

    A rep sees their own records (and their team's when `REP_VISIBILITY` is "team"); a manager sees everything
    owned by members of the teams they manage, and their own; an admin sees all. Inactive users see nothing.
    """
    return _owners(user, editing=False)


def owners_editable_by(user: User) -> QuerySet | None:
    """Ids of users whose records `user` may change; None means everyone's (an admin).

    Like `owners_visible_to`, except that seeing a teammate's records never lets a rep change them.
    """
    return _owners(user, editing=True)


def visibility_key(user: User) -> tuple:
    """What the rule above reads of `user` and of the settings, the rest being in the tables: lists made by it for
    `user` may be kept under this key for as long as those tables do not change (`pipeline.pick_lists`)."""
    return (user.pk, user.is_active, user.is_admin, user.role, user.team_id, settings.REP_VISIBILITY)


def visible_users(user: User) -> QuerySet[User]:
    """Users `user` may see in lists and pick as owners: their visible owners (everyone, for an admin)."""
    owners = owners_visible_to(user)
    users = User.objects.select_related("team")
    return users if owners is None else users.filter(pk__in=owners)


def assignable_owners(user: User) -> QuerySet[User]:
    """Users `user` may make the owner of a record: those whose records they may change (anyone, for an admin)."""
    owners = owners_editable_by(user)
    users = User.objects.filter(is_active=True)
    return users if owners is None else users.filter(pk__in=owners)


def visible_teams(user: User) -> QuerySet[Team]:
    """Every team (the organisation chart is no secret to colleagues), for every active user."""
    return Team.objects.all() if user.is_active else Team.objects.none()


def api_tokens_of(user: User) -> QuerySet[ApiToken]:
    """The personal API tokens of `user`, newest first; nobody sees another user's tokens."""
    return ApiToken.objects.filter(user=user) if user.is_authenticated else ApiToken.objects.none()
