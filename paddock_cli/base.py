"""What every command shares: how it answers (text or --json, errors with exit status 1) and
the client for the stored credentials."""

import json
from collections.abc import Callable
from typing import Any, NoReturn

import click
from rich.console import Console

from paddock_cli import config
from paddock_cli.client import Client


class Output:
    """How a command answers: text for a person (progress and notes on stderr), or with --json
    the API's JSON on stdout and nothing else, errors as {"error": ..., "status": ...}."""

    def __init__(self) -> None:
        self.json = False
        self.stderr = Console(stderr=True)

    def result(self, data: Any, text: Callable[[], str]) -> None:
        """Print a command's result: `data` as JSON, or `text()` for a person."""
        click.echo(json.dumps(data, indent=2) if self.json else text())

    def note(self, text: str) -> None:
        """A line for a person beside the result (stderr); none under --json."""
        if not self.json:
            click.echo(text, err=True)

    def fail(self, message: str, status: int | None = None) -> NoReturn:
        """Print the error and exit with status 1."""
        if self.json:
            click.echo(json.dumps({"error": message, "status": status}, indent=2))
        else:
            click.echo(f"error: {message}", err=True)
        raise click.exceptions.Exit(1)


def _json_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Output).json = True


json_option = click.option("--json", "json_output", is_flag=True, expose_value=False, callback=_json_flag,
                           help='Print the JSON the server answered (errors as {"error": ...}).')


def connect() -> Client:
    """A client for the server and token `paddock login` stored (or PADDOCK_URL / PADDOCK_TOKEN)."""
    credentials = config.load()
    return Client(credentials.url, credentials.token)
