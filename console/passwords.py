"""Password reset by email: Django's views (django.contrib.auth.views), audited and throttled.

1. /password-reset/ takes an address. Whether an account has it or not, the answer is the same
   page ("if an account has this address, a link is on its way"); only for a known, active
   account with a usable password (Django's rule) is an email sent, and the request audited
   (`user.password_reset_requested`, before the mail goes out).
2. Asking too often for one address, or from one client address, within
   PADDOCK_LOGIN_THROTTLE_SECONDS answers 429 and sends nothing; the same for any address, known
   or not. Counts live in the `throttle` cache with the sign-in counts; without it, resets go on
   unthrottled, with a warning (as sign-ins do: console/authentication.py).
3. The emailed link (one use, PASSWORD_RESET_TIMEOUT) opens a form for the new password; saving
   it is audited (`user.password_reset`) in the transaction that saves it, and clears the
   account's failed sign-ins.

Admins who create a person without a password send them the same link (`send_set_password_link`)."""

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.tokens import default_token_generator
from django.core.cache import caches
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from console import people_services
from console.audit import Actor, client_address
from console.authentication import clear_login_failures, count_throttled

logger = logging.getLogger(__name__)
THROTTLED = "Too many password reset requests for this address or from yours: try again later."


class PasswordResetView(auth_views.PasswordResetView):
    """Django's form, throttled, each email to a known account audited before it is sent."""

    def form_valid(self, form: Any) -> HttpResponse:
        email = form.cleaned_data["email"]
        if _throttled(email, client_address(self.request)):
            form.add_error(None, THROTTLED)
            return self.render_to_response(self.get_context_data(form=form), status=429)
        actor = Actor(client_address=client_address(self.request), label="anonymous",
                      request_id=getattr(self.request, "request_id", ""))
        for user in form.get_users(email):  # who Django's form will mail: active, usable password
            people_services.audit_password_reset_requested(actor=actor, user=user)
        return super().form_valid(form)  # sends the mail, outside the audit's transaction


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's form for the new password; the password and its audit event commit together."""

    def form_valid(self, form: Any) -> HttpResponse:
        with transaction.atomic():
            response = super().form_valid(form)
            actor = Actor(user=form.user, client_address=client_address(self.request),
                          request_id=getattr(self.request, "request_id", ""))
            people_services.audit_password_reset(actor=actor, user=form.user)
        clear_login_failures(username=form.user.get_username())
        return response


def send_set_password_link(*, request: HttpRequest, user: Any, new_account: bool) -> bool:
    """Email a person, from an admin, the link to set their password (the reset link: one use,
    PASSWORD_RESET_TIMEOUT): their first for a `new_account`. Audited like a reset; returns
    whether the mail server took it."""
    people_services.audit_password_reset_requested(actor=Actor.from_request(request), user=user)
    context = {
        "email": user.email, "domain": request.get_host(), "site_name": "Paddock", "user": user,
        "uid": urlsafe_base64_encode(force_bytes(user.pk)), "token": default_token_generator.make_token(user),
        "protocol": "https" if request.is_secure() else "http", "sent_by": request.user, "new_account": new_account,
    }
    subject = "".join(loader.render_to_string("registration/set_password_subject.txt", context).splitlines())
    body = loader.render_to_string("registration/set_password_email.txt", context)
    try:
        EmailMultiAlternatives(subject, body, None, [user.email]).send()
    except Exception:  # noqa: BLE001 - the person exists; the admin is told to try again
        logger.exception("could not send the set-password email to user %s", user.pk)
        return False
    return True


def clear_reset_requests(*, email: str = "", address: str = "") -> None:
    """Forget the reset requests counted for an email address and/or a client address."""
    keys = [key for key, given in zip(_throttle_keys(email, address), (email, address), strict=True) if given]
    try:
        caches["throttle"].delete_many(keys)
    except Exception:  # noqa: BLE001 - fail open, loudly
        logger.warning("throttle unavailable; nothing to forget", exc_info=True)


def _throttle_keys(email: str, address: str) -> list[str]:
    # Hashed: an address may hold anything, a key must not. Case-folded: mail is delivered so.
    return [f"reset:email:{hashlib.sha256(email.casefold().encode()).hexdigest()}", f"reset:addr:{address}"]


def _throttled(email: str, address: str) -> bool:
    """Count this request against the address asked for and the client's; whether either is past its limit."""
    keys = _throttle_keys(email, address)
    limits = [settings.PADDOCK_PASSWORD_RESETS_PER_EMAIL, settings.PADDOCK_PASSWORD_RESETS_PER_ADDRESS]
    try:
        counts = count_throttled(keys)
    except Exception:  # noqa: BLE001 - fail open, loudly (console/authentication.py does the same)
        logger.warning("throttle unavailable; this password reset request is not throttled", exc_info=True)
        return False
    return any(count > limit for count, limit in zip(counts, limits, strict=True))
