"""Writes on people and on teams' members, each in one audited transaction. They write the events
the admin writes for the same changes (console/admin.py: `user.create`, `user.update`,
`membership.create`, `membership.update`, `membership.delete`), so that a change reads the same in
the audit log wherever it was made; password resets add `user.password_reset_requested` and
`user.password_reset`. Who may call them (admins) is the views' check, as for the team services."""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from console.audit import Actor, record_event
from console.choices import Role
from console.errors import Conflict, Forbidden, InvalidInput
from console.models import Membership, Team
from console.services import _membership_snapshot


def create_user(*, actor: Actor, username: str, email: str = "", password: str | None = None) -> Any:
    """A new person (not an admin). Without a password theirs is unusable until they set one
    from an emailed link (console.passwords). Refused: a username or address already taken (in
    any case), a malformed one, a password the validators refuse. The password never reaches the log."""
    User = get_user_model()
    if not username or len(username) > 150:
        raise InvalidInput("a username is 1 to 150 characters")
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise InvalidInput(f"'{username}' is not a valid username: use letters, digits and @ . + - _ only") from None
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise InvalidInput(f"'{email}' is not a valid email address") from None
    if password is not None:
        try:
            validate_password(password, User(username=username, email=email))
        except ValidationError as exc:
            raise InvalidInput("the password is refused: " + " ".join(exc.messages)) from None
    taken = User._default_manager.filter(username__iexact=username).first()
    if taken is not None:
        raise Conflict(f"a user named '{taken.get_username()}' already exists")
    if email and (holder := User._default_manager.filter(email__iexact=email).first()) is not None:
        raise Conflict(f"the address {email} is already used by user '{holder.get_username()}': "
                       "a password reset link goes to every account with the address")
    try:
        with transaction.atomic():
            user = User._default_manager.create_user(username=username, email=email, password=password)
            record_event(actor=actor, action="user.create", obj=user, after=user_snapshot(user))
    except IntegrityError:  # the same name, created meanwhile
        raise Conflict(f"a user named '{username}' already exists") from None
    return user


def set_user_active(*, actor: Actor, user: Any, active: bool) -> Any:
    """Deactivate or reactivate a person (already so: no change, no event). A deactivated person
    cannot sign in, their session ends at its next request, and their API tokens are refused
    (console.authentication.check_token: "token owner is inactive") until they are reactivated;
    the tokens themselves are kept. An admin cannot deactivate themselves: Paddock keeps at least
    the admin who acts."""
    person = actor.person
    if not active and person is not None and person.pk == user.pk:
        raise Forbidden("you cannot deactivate your own account: another admin must")
    with transaction.atomic():
        user = get_user_model()._default_manager.select_for_update().get(pk=user.pk)
        if user.is_active == active:
            return user
        before = user_snapshot(user)
        user.is_active = active
        user.save(update_fields=["is_active"])
        record_event(actor=actor, action="user.update", obj=user, before=before, after=user_snapshot(user))
    return user


def add_member(*, actor: Actor, team: Team, user: Any, role: str) -> Membership:
    """Make `user` a member of `team` with `role`; a member already is refused (change the role instead)."""
    role = valid_role(role)
    with transaction.atomic():
        Team.objects.select_for_update().get(pk=team.pk)  # one add at a time per team: no duplicate row
        existing = Membership.objects.filter(team=team, user=user).first()
        if existing is not None:
            raise Conflict(f"'{user.get_username()}' is already a member of team '{team.name}' as {existing.role}: "
                           "change their role instead")
        membership = Membership.objects.create(team=team, user=user, role=role)
        record_event(actor=actor, action="membership.create", obj=membership, after=_membership_snapshot(membership))
    return membership


def change_member_role(*, actor: Actor, membership: Membership, role: str) -> Membership:
    """Give a member another role (the same role: no change, no event)."""
    role = valid_role(role)
    with transaction.atomic():
        membership = Membership.objects.select_for_update().select_related("team", "user").get(pk=membership.pk)
        if membership.role == role:
            return membership
        before = _membership_snapshot(membership)
        membership.role = role
        membership.save(update_fields=["role"])
        record_event(actor=actor, action="membership.update", obj=membership, before=before,
                     after=_membership_snapshot(membership))
    return membership


def remove_member(*, actor: Actor, membership: Membership) -> None:
    """Take a member off a team. Its last member or last engineer may go too: admins change every
    team, and the team keeps its models."""
    with transaction.atomic():
        membership = Membership.objects.select_for_update().select_related("team", "user").get(pk=membership.pk)
        record_event(actor=actor, action="membership.delete", obj=membership, before=_membership_snapshot(membership))
        membership.delete()


def audit_password_reset_requested(*, actor: Actor, user: Any) -> None:
    """Record that a password reset (or first set-password) link is being emailed to `user`."""
    with transaction.atomic():
        record_event(actor=actor, action="user.password_reset_requested", obj=user,
                     after={"username": user.get_username(), "email": user.email})


def audit_password_reset(*, actor: Actor, user: Any) -> None:
    """Record that `user` set a new password from an emailed link; inside the transaction that saved it."""
    record_event(actor=actor, action="user.password_reset", obj=user,
                 after={"username": user.get_username(), "usable_password": user.has_usable_password()})


def valid_role(role: str) -> str:
    """The role if it is one (viewer, engineer), else InvalidInput naming them."""
    if role not in Role.values:
        raise InvalidInput(f"role '{role}' is not one of: {', '.join(Role.values)}")
    return role


def user_snapshot(user: Any) -> dict[str, Any]:
    """A person as the audit log shows them: never a password or its hash."""
    return {"username": user.get_username(), "email": user.email, "is_active": user.is_active,
            "is_superuser": user.is_superuser, "usable_password": user.has_usable_password()}
