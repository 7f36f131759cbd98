"""Where `paddock login` keeps the server's URL and the token: a JSON file only its owner can read
(0600, in a 0700 folder); PADDOCK_URL and PADDOCK_TOKEN override what it holds."""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

FILE_NAME = "credentials.json"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ConfigError(Exception):
    """The CLI cannot work with the settings it has; the message says what to do."""


@dataclass(frozen=True)
class Credentials:
    """A server's base URL and the API token sent to it."""

    url: str
    token: str


def config_dir() -> Path:
    """PADDOCK_CONFIG_DIR, else $XDG_CONFIG_HOME/paddock, else ~/.config/paddock."""
    explicit = os.environ.get("PADDOCK_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "paddock"


def credentials_path() -> Path:
    """The credentials file `paddock login` writes."""
    return config_dir() / FILE_NAME


def normalize_url(raw: str) -> str:
    """The server's base URL without a trailing slash; ConfigError unless http(s)://host."""
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"'{raw}' is not a server URL: expected http://host[:port] or https://host[:port]")
    return url


def sends_token_in_clear(url: str) -> bool:
    """Whether a token sent to `url` crosses a network unencrypted (plain http beyond this machine)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS


def save(credentials: Credentials) -> Path:
    """Write the credentials file, readable and writable by its owner only; returns its path."""
    folder = config_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / FILE_NAME
    # mkstemp creates the file 0600, so the token is never readable by others, not even for the
    # moment before a chmod; os.replace swaps it in whole (a crash leaves the old file as it was).
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".credentials-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({"url": credentials.url, "token": credentials.token}, out, indent=2)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def remove() -> Path | None:
    """Delete the credentials file; its path, or None when there was none."""
    path = credentials_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return path


def load() -> Credentials:
    """The stored credentials, each overridden by PADDOCK_URL / PADDOCK_TOKEN when set; ConfigError
    when either is missing or the file cannot be read."""
    path = credentials_path()
    stored: object = {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; run `paddock login URL` again") from None
    if not isinstance(stored, dict):
        raise ConfigError(f"{path} does not hold credentials; run `paddock login URL` again")
    url = os.environ.get("PADDOCK_URL") or stored.get("url")
    token = os.environ.get("PADDOCK_TOKEN") or stored.get("token")
    if not url or not token:
        raise ConfigError("not logged in: run `paddock login URL` (or set PADDOCK_URL and PADDOCK_TOKEN)")
    return Credentials(normalize_url(str(url)), str(token).strip())
