"""Mail and password-reset settings, read from the environment (.env.example lists them).
console.settings imports every name here; they live apart only because that module is at the
size every module is held to (tests/test_structure.py).

Under DEBUG (`make run`) mail is printed on the console that runs Paddock, so a password reset
link can be followed without a mail server; otherwise it goes out over SMTP."""

from console.env import env_bool, env_int, env_secret, env_str

__all__ = [
    "DEFAULT_FROM_EMAIL", "EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_HOST_PASSWORD", "EMAIL_HOST_USER", "EMAIL_PORT",
    "EMAIL_SUBJECT_PREFIX", "EMAIL_TIMEOUT", "EMAIL_USE_SSL", "EMAIL_USE_TLS", "PADDOCK_PASSWORD_RESETS_PER_ADDRESS",
    "PADDOCK_PASSWORD_RESETS_PER_EMAIL", "PASSWORD_RESET_TIMEOUT",
]

_CONSOLE = "django.core.mail.backends.console.EmailBackend"
_SMTP = "django.core.mail.backends.smtp.EmailBackend"

EMAIL_BACKEND = env_str("EMAIL_BACKEND", _CONSOLE if env_bool("DEBUG", False) else _SMTP)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)  # STARTTLS, usually on port 587
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # TLS from the start, usually on port 465
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: set one of them")
# A mail server that hangs must not hold a sign-in page's request for minutes.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "paddock@localhost")
EMAIL_SUBJECT_PREFIX = "[Paddock] "  # the subject of mail to the site's admins (Django's own)
# A reset link works once, for this long (Django's default is 3 days).
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3 * 3600, minimum=60)
# Reset links asked for one address, and from one client address, within
# PADDOCK_LOGIN_THROTTLE_SECONDS; past either the form answers 429 and sends nothing (console/passwords.py).
PADDOCK_PASSWORD_RESETS_PER_EMAIL = env_int("PADDOCK_PASSWORD_RESETS_PER_EMAIL", 3, minimum=1)
PADDOCK_PASSWORD_RESETS_PER_ADDRESS = env_int("PADDOCK_PASSWORD_RESETS_PER_ADDRESS", 10, minimum=1)
