"""The console's teams and people pages. Everyone sees the teams they belong to and each one's
members (admins: every team); admins create teams, add, re-role and remove members, create people
(with a password, or an emailed link to set one) and deactivate or reactivate them. One view
serves each page and its fragment; a refusal answers in its kind's status with the fragment, its
message in a role="alert" element (static/js/forms.js shows it in the form). Thin: the services
(console.services, console.people_services) do the writes, each audited."""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from console import passwords, people_services, services
from console.admin_pages import admin_only
from console.audit import Actor
from console.choices import Role
from console.errors import Forbidden, InvalidInput, NotFound, PaddockError
from console.htmx import htmx_partial
from console.models import Membership, Team

TEAMS = "console/partials/_teams.html"
MEMBERS = "console/partials/_members.html"
PEOPLE = "console/partials/_people.html"
ADMINS_ONLY = "only admins manage teams and people: ask one to make this change"
USER_ACTIONS = ("deactivate", "reactivate", "send-link")


def require_admin(user: Any) -> None:
    """Forbidden unless the person is an admin (a superuser)."""
    if not user.is_superuser:
        raise Forbidden(ADMINS_ONLY)


def visible_teams(user: Any) -> QuerySet[Team]:
    """Every team for admins; the teams a person belongs to otherwise."""
    return Team.objects.all() if user.is_superuser else Team.objects.filter(memberships__user=user).distinct()


def _team_or_404(request: HttpRequest, name: str) -> Team:
    """The team if the person sees it; to anyone else it does not exist (404, never 403)."""
    team = None if "\x00" in name else visible_teams(request.user).filter(name=name).first()
    if team is None:
        raise Http404(f"team '{name}' not found")
    return team


def _answer(request: HttpRequest, page: str, fragment: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, fragment if htmx_partial(request) else page, context, status=status)


def teams_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    """The teams card: the teams the person sees, with their member counts and the person's own role."""
    teams = visible_teams(request.user).annotate(member_count=Count("memberships", distinct=True)).order_by("name")
    assert request.user.is_authenticated  # login_required says so; this tells mypy
    roles = dict(Membership.objects.filter(user=request.user).values_list("team_id", "role"))
    rows = [{"team": team, "role": roles.get(team.pk, "")} for team in teams]
    return {"rows": rows, "is_admin": request.user.is_superuser, "form": {}, "error": "", "notice": "", **extra}


def members_context(request: HttpRequest, team: Team, **extra: Any) -> dict[str, Any]:
    """The members card: the team's members and roles; for admins, the people they can add."""
    members = team.memberships.select_related("user").order_by("user__username")
    context = {"team": team, "members": members, "roles": Role.choices, "is_admin": request.user.is_superuser,
               "candidates": [], "form": {}, "error": "", "notice": "", **extra}
    if request.user.is_superuser:
        context["candidates"] = get_user_model()._default_manager.filter(is_active=True).exclude(
            memberships__team=team).order_by("username").values_list("username", flat=True)
    return context


def people_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    """The people card: every person, active or not, with their teams and roles."""
    people = get_user_model()._default_manager.order_by("username").prefetch_related(
        Prefetch("memberships", queryset=Membership.objects.select_related("team").order_by("team__name")))
    return {"people": people, "form": {}, "error": "", "notice": "", **extra}


@login_required
@vary_on_headers("HX-Request")  # one URL, two answers: caches keep the page and the fragment apart
@require_http_methods(["GET", "POST"])
def team_list(request: HttpRequest) -> HttpResponseBase:
    """The teams the person sees; POST creates a team (admins)."""
    page = "console/people/teams.html"
    if request.method == "GET":
        return _answer(request, page, TEAMS, teams_context(request))
    form = {"name": request.POST.get("name", "").strip(), "description": request.POST.get("description", "").strip()}
    try:
        require_admin(request.user)
        team = services.create_team(actor=Actor.from_request(request), name=form["name"],
                                    description=form["description"])
    except PaddockError as exc:
        return _answer(request, page, TEAMS, teams_context(request, form=form, error=exc.message), exc.http_status)
    notice = f"Team '{team.name}' created: add its members on its page."
    return _answer(request, page, TEAMS, teams_context(request, notice=notice), 201)


@login_required
@vary_on_headers("HX-Request")
@require_http_methods(["GET", "POST"])
def team_detail(request: HttpRequest, name: str) -> HttpResponseBase:
    """A team's members and their roles; POST adds a member (admins)."""
    team = _team_or_404(request, name)
    page = "console/people/team_detail.html"
    if request.method == "GET":
        return _answer(request, page, MEMBERS, members_context(request, team))
    form = {"username": request.POST.get("username", "").strip(), "role": request.POST.get("role", "")}
    try:
        require_admin(request.user)
        found = get_user_model()._default_manager.filter(username=form["username"])
        user = None if "\x00" in form["username"] else found.first()  # PostgreSQL refuses NUL in a query
        if user is None:
            raise NotFound(f"no user named '{form['username']}'")
        people_services.add_member(actor=Actor.from_request(request), team=team, user=user, role=form["role"])
    except PaddockError as exc:
        context = members_context(request, team, form=form, error=exc.message)
        return _answer(request, page, MEMBERS, context, exc.http_status)
    notice = f"{user.get_username()} added to team {team.name} as {form['role']}."
    return _answer(request, page, MEMBERS, members_context(request, team, notice=notice), 201)


def _change_member(request: HttpRequest, name: str, user_id: int, remove: bool) -> HttpResponseBase:
    team = _team_or_404(request, name)
    try:
        require_admin(request.user)
        membership = team.memberships.select_related("user").filter(user_id=user_id).first()
        if membership is None:
            raise NotFound(f"user {user_id} is not a member of team '{team.name}'")
        username, actor = membership.user.get_username(), Actor.from_request(request)
        if remove:
            people_services.remove_member(actor=actor, membership=membership)
            notice = f"{username} removed from team {team.name}."
        else:
            role = request.POST.get("role", "")
            people_services.change_member_role(actor=actor, membership=membership, role=role)
            notice = f"{username} is now {role} in team {team.name}."
    except PaddockError as exc:
        context = members_context(request, team, error=exc.message)
        return _answer(request, "console/people/team_detail.html", MEMBERS, context, exc.http_status)
    if not htmx_partial(request):
        return redirect("console:team_detail", name=team.name)
    return render(request, MEMBERS, members_context(request, team, notice=notice))


@login_required
@require_POST
def membership_update(request: HttpRequest, name: str, user_id: int) -> HttpResponseBase:
    """Give a member another role (admins); answers with the members card."""
    return _change_member(request, name, user_id, remove=False)


@login_required
@require_POST
def membership_delete(request: HttpRequest, name: str, user_id: int) -> HttpResponseBase:
    """Take a member off the team (admins); answers with the members card."""
    return _change_member(request, name, user_id, remove=True)


@admin_only(ADMINS_ONLY)
@vary_on_headers("HX-Request")
@require_http_methods(["GET", "POST"])
def user_list(request: HttpRequest) -> HttpResponseBase:
    """Every person, their teams and whether they are active (admins); POST creates a person."""
    page = "console/people/people.html"
    if request.method == "GET":
        return _answer(request, page, PEOPLE, {**people_context(request), **teams_context(request)})
    form: dict[str, Any] = {"username": request.POST.get("username", "").strip(),
                            "email": request.POST.get("email", "").strip(),
                            "send_link": bool(request.POST.get("send_link"))}
    password = request.POST.get("password", "")
    try:
        _check_password_choice(form, password)
        user = people_services.create_user(actor=Actor.from_request(request), username=form["username"],
                                           email=form["email"], password=password or None)
    except PaddockError as exc:
        context = {**teams_context(request), **people_context(request, form=form, error=exc.message)}
        return _answer(request, page, PEOPLE, context, exc.http_status)
    notice = f"User '{user.get_username()}' created with the password you gave."
    if form["send_link"]:
        notice = _link_notice(request, user, f"User '{user.get_username()}' created", new_account=True)
    return _answer(request, page, PEOPLE, {**teams_context(request), **people_context(request, notice=notice)}, 201)


def _check_password_choice(form: dict[str, Any], password: str) -> None:
    """A new person gets a password now or a link to set one: exactly one of them."""
    if password and form["send_link"]:
        raise InvalidInput("give either an initial password or a set-password email, not both")
    if not password and not form["send_link"]:
        raise InvalidInput("give an initial password, or tick 'email a link to set a password'")
    if form["send_link"] and not form["email"]:
        raise InvalidInput("a set-password email needs the person's email address")


def _link_notice(request: HttpRequest, user: Any, done: str, new_account: bool = False) -> str:
    if passwords.send_set_password_link(request=request, user=user, new_account=new_account):
        return f"{done}: a link to set a password was emailed to {user.email}."
    return (f"{done}, but the mail server did not take the set-password email (see the log): "
            "try 'Send link' again once mail works.")


@admin_only(ADMINS_ONLY)
@require_POST
def user_action(request: HttpRequest, user_id: int, action: str) -> HttpResponseBase:
    """Deactivate or reactivate a person, or email them a link to set a password (admins);
    answers with the people card."""
    if action not in USER_ACTIONS:
        raise Http404(f"no action '{action}' for people")
    try:
        user = get_user_model()._default_manager.filter(pk=user_id).first()
        if user is None:
            raise NotFound(f"user {user_id} not found")
        if action == "send-link":
            if not user.is_active or not user.email:
                raise InvalidInput(f"'{user.get_username()}' needs to be active and to have an email address "
                                   "to be sent a link")
            notice = _link_notice(request, user, f"'{user.get_username()}'")
        else:
            people_services.set_user_active(actor=Actor.from_request(request), user=user,
                                            active=action == "reactivate")
            notice = f"'{user.get_username()}' {action}d."
    except PaddockError as exc:
        context = {**teams_context(request), **people_context(request, error=exc.message)}
        return _answer(request, "console/people/people.html", PEOPLE, context, exc.http_status)
    if not htmx_partial(request):
        return redirect("console:user_list")
    return render(request, PEOPLE, people_context(request, notice=notice))
