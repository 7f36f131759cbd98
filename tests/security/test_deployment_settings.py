"""A deployment's own settings as an attacker would like them: a placeholder SECRET_KEY copied from
.env.example, and an admin password left in the logs of `docker compose`."""

import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.conftest import ROOT, child_env, free_port, port_open, wait_until

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


def start_proxied_web(tmp_path: Any, trusted: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = child_env(PADDOCK_TRUSTED_PROXIES=trusted)
    log = (tmp_path / f"web-{trusted}.log").open("wb")
    web = subprocess.Popen([sys.executable, "-m", "serving.v2.server", "--host", "127.0.0.1", "--port", str(port),
                            "--proxy-headers"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: port_open(port), timeout=30)
    return web, f"http://127.0.0.1:{port}"


def create_model_through(base: str, token: str, name: str) -> None:
    request = urllib.request.Request(f"{base}/api/v1/models/", data=json.dumps({"name": name, "team": "ml"}).encode(),
                                     method="POST", headers={"Authorization": f"Bearer {token}",
                                                             "Content-Type": "application/json",
                                                             "X-Forwarded-For": "203.0.113.66"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("trusted", "recorded"), [("10.9.9.9", "127.0.0.1"), ("127.0.0.1", "203.0.113.66")])
def test_x_forwarded_for_is_believed_only_from_the_trusted_proxy(
        tmp_path: Any, cast: dict[str, Any], trusted: str, recorded: str) -> None:
    """Without it, any client could write any address into the audit log (and dodge the per-address throttles)."""
    from console.audit import Actor
    from console.models import AuditEvent
    from console.services import create_token

    _, token = create_token(actor=Actor.system("tests"), user=cast["engineer"], name="t", scopes=["read", "manage"])
    web, base = start_proxied_web(tmp_path, trusted)
    try:
        create_model_through(base, token, f"via-{trusted.replace('.', '-')}")
    finally:
        web.terminate()
        web.wait(timeout=30)
    event = AuditEvent.objects.get(action="model.create")
    assert event.client_address == recorded
