"""`paddock login` and the credentials file: a token is checked by the real server before it is
kept, kept where only its owner can read it, and refused in the server's own words."""

import json
import stat
from collections.abc import Callable
from dataclasses import replace

from tests.cli.conftest import Paddock
from tests.conftest import free_port


def test_login_checks_the_token_and_keeps_it_in_a_file_only_its_owner_can_read(
        paddock: Paddock, web_server: str, token_of: Callable[..., str]) -> None:
    raw = token_of("engineer")
    done = paddock("login", web_server + "/", "--token", raw)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"logged in to {web_server} (credentials in {paddock.credentials}, "
                           "readable by you only)\n")
    assert done.stderr == ""  # a loopback address: no warning about plain http
    assert stat.S_IMODE(paddock.credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(paddock.config_dir.stat().st_mode) == 0o700
    assert json.loads(paddock.credentials.read_text()) == {"url": web_server, "token": raw}
    assert [path.name for path in paddock.config_dir.iterdir()] == ["credentials.json"]  # no temporary left
    listed = paddock("models", "list")
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "no models\n", "")


def test_login_reads_a_token_piped_in(paddock: Paddock, web_server: str, token_of: Callable[..., str]) -> None:
    raw = token_of("viewer", "read")
    done = paddock("login", web_server, stdin=raw + "\n")
    assert done.returncode == 0, done.stderr
    assert raw not in done.stderr + done.stdout
    assert json.loads(paddock.credentials.read_text())["token"] == raw
    nothing = paddock("login", web_server, stdin="")
    assert (nothing.returncode, nothing.stderr) == (
        1, "error: no token given: pass --token, pipe it in, or type it when asked\n")


def test_login_refuses_a_bad_token_with_the_servers_message_and_keeps_nothing(paddock: Paddock,
                                                                               web_server: str) -> None:
    done = paddock("login", web_server, "--token", "pdk_" + "x" * 43)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "error: invalid token\n")
    assert not paddock.credentials.exists()
    as_json = paddock("--json", "login", web_server, "--token", "not-a-token")
    assert as_json.returncode == 1 and as_json.stderr == ""
    assert json.loads(as_json.stdout) == {"error": "invalid token", "status": 401}
    assert not paddock.credentials.exists()


def test_login_refuses_a_token_that_cannot_read_the_api(paddock: Paddock, web_server: str,
                                                        token_of: Callable[..., str]) -> None:
    done = paddock("login", web_server, "--token", token_of("engineer", "predict"))
    assert (done.returncode, done.stderr) == (1, "error: token lacks the 'read' scope\n")
    assert not paddock.credentials.exists()


def test_login_to_a_server_that_does_not_answer_says_so(paddock: Paddock) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = paddock("login", url, "--token", "pdk_" + "x" * 43)
    assert (done.returncode, done.stderr) == (1, f"error: cannot reach {url}: Connection refused\n")
    bad_url = paddock("login", "127.0.0.1:8000", "--token", "t")
    assert (bad_url.returncode, bad_url.stderr) == (
        1, "error: '127.0.0.1:8000' is not a server URL: expected http://host[:port] or https://host[:port]\n")
    assert not paddock.credentials.exists()


def test_commands_without_credentials_say_how_to_log_in(paddock: Paddock) -> None:
    done = paddock("models", "list")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "error: not logged in: run `paddock login URL` (or set PADDOCK_URL and PADDOCK_TOKEN)\n"
    as_json = paddock("models", "list", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {
        "error": "not logged in: run `paddock login URL` (or set PADDOCK_URL and PADDOCK_TOKEN)", "status": None}


def test_environment_variables_override_the_stored_credentials(engineer: Paddock) -> None:
    other_token = engineer.with_token("pdk_" + "y" * 43)
    done = other_token("models", "list")
    assert (done.returncode, done.stderr) == (1, "error: invalid token\n")
    url = f"http://127.0.0.1:{free_port()}"
    other_server = replace(engineer, env={"PADDOCK_URL": url})
    done = other_server("models", "list")
    assert (done.returncode, done.stderr) == (1, f"error: cannot reach {url}: Connection refused\n")
    assert engineer("models", "list").returncode == 0  # the file itself is untouched


def test_logout_forgets_the_credentials(engineer: Paddock) -> None:
    done = engineer("logout")
    assert (done.returncode, done.stdout) == (0, f"removed {engineer.credentials}\n")
    assert not engineer.credentials.exists()
    again = engineer("logout", "--json")
    assert (again.returncode, json.loads(again.stdout)) == (0, {"removed": None})
    assert engineer("models", "list").returncode == 1
