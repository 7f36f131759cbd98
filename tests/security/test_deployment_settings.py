"""A deployment's own settings as an attacker would like them: a placeholder SECRET_KEY copied from
.env.example, and an admin password left in the logs of `docker compose`."""

import os
import subprocess
import sys
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.conftest import ROOT, child_env

PRODUCTION = {"DJANGO_SETTINGS_MODULE": "console.settings", "DEBUG": "0"}


@pytest.mark.parametrize("key", ["change-me", "secret", "short-but-not-a-placeholder"])
def test_production_settings_refuse_a_placeholder_or_short_secret_key(key: str) -> None:
    env = {**{k: v for k, v in os.environ.items() if k != "PADDOCK_ALLOW_INSECURE_KEY"}, **PRODUCTION,
           "SECRET_KEY": key}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert ("django.core.exceptions.ImproperlyConfigured: SECRET_KEY is a placeholder or shorter than 32 "
            "characters: set a long random one, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'"
            ) in done.stderr


@pytest.mark.django_db(transaction=True)
def test_ensure_admin_prints_no_password_outside_debug(cast: dict[str, Any]) -> None:
    env = child_env(**PRODUCTION, SECRET_KEY="s" * 40, PADDOCK_ADMIN_PASSWORD="")
    done = subprocess.run([sys.executable, "manage.py", "ensure_admin", "--username", "ops"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("created admin user 'ops' without a usable password: set one with "
                                   "`manage.py changepassword ops` (or set PADDOCK_ADMIN_PASSWORD before the first "
                                   "start)")
    ops = User.objects.get(username="ops")
    assert ops.is_superuser and not ops.has_usable_password()
