"""`python manage.py <command>` on `make run`'s embedded defaults without DEBUG=1 (a checkout with
nothing configured), while an environment that configures anything is judged as before: no
SECRET_KEY outside those defaults is still refused, by manage.py and by the servers."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, free_port

# The suite's own settings, and what make run's environment never has (tests/console/test_make_run.py).
SUITE_ONLY = ("DATABASE_URL", "MEDIA_ROOT", "PADDOCK_VAR_DIR", "PADDOCK_CELERY_QUEUE", "PADDOCK_REDIS_PREFIX",
              "SECRET_KEY", "SECRET_KEY_FILE", "DJANGO_SETTINGS_MODULE", "SECURE_SSL_REDIRECT",
              "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "DEBUG", "PADDOCK_ALLOW_INSECURE_KEY")
NOTICE = ("manage.py: DEBUG, SECRET_KEY and DATABASE_URL are unset: using make run's development settings "
          "(DEBUG=1, SQLite under var/)\n")
REFUSAL = "django.core.exceptions.ImproperlyConfigured: SECRET_KEY is not set (or set DEBUG=1 for development)"


def fresh_checkout_env(var: Path, **overrides: str) -> dict[str, str]:
    """The environment of a person on a fresh checkout: none of the suite's settings, no DEBUG."""
    env = {key: value for key, value in os.environ.items() if key not in SUITE_ONLY}
    env.update(PADDOCK_VAR_DIR=str(var), **overrides)
    return env


def manage(env: dict[str, str], *args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)


def test_management_commands_run_on_make_runs_defaults_without_debug(tmp_path: Path) -> None:
    env = fresh_checkout_env(tmp_path)
    check = manage(env, "check")
    assert check.returncode == 0, check.stderr
    assert check.stdout == "System check identified no issues (0 silenced).\n"
    assert check.stderr == NOTICE
    migrated = manage(env, "migrate", "--verbosity", "0")
    assert (migrated.returncode, migrated.stderr) == (0, NOTICE)
    assert (tmp_path / "paddock.sqlite3").exists()  # make run's embedded database, under its var folder
    admin = manage({**env, "PADDOCK_ADMIN_PASSWORD": "demo-admin-pass"}, "ensure_admin")
    assert admin.returncode == 0, admin.stderr
    token = manage(env, "create_token", "admin", "--scope", "read")
    assert token.returncode == 0, token.stderr
    assert token.stdout.startswith("pdk_") and token.stderr == NOTICE
    shown = manage(env, "showmigrations", "registry")
    assert shown.returncode == 0 and "[X] 0001_initial" in shown.stdout


def test_production_settings_without_a_secret_key_are_still_refused(tmp_path: Path) -> None:
    production = fresh_checkout_env(tmp_path, DATABASE_URL="postgres://paddock@127.0.0.1:5432/paddock")
    refused = manage(production, "check")
    assert refused.returncode == 1
    assert REFUSAL in refused.stderr and "make run's development settings" not in refused.stderr
    debug_off = manage(fresh_checkout_env(tmp_path, DEBUG="0"), "check")
    assert debug_off.returncode == 1 and REFUSAL in debug_off.stderr
    empty_key = manage(fresh_checkout_env(tmp_path, SECRET_KEY=""), "check")
    assert empty_key.returncode == 1 and REFUSAL in empty_key.stderr
    # A server started by hand, on the same fresh checkout, never takes manage.py's defaults.
    server = subprocess.run([sys.executable, "-m", "serving.v2.server", "--port", str(free_port())], cwd=ROOT,
                            env=fresh_checkout_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert server.returncode == 1 and REFUSAL in server.stderr
