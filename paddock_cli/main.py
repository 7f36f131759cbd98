"""The `paddock` command (click): log in, list models, upload a version and wait for its
validation, promote, run rollouts, tail live figures (docs/cli.md). Every command takes --json;
every refusal prints the server's message and exits 1."""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from paddock_cli import config, render, traffic
from paddock_cli.base import Output, connect, json_option
from paddock_cli.client import ApiError, Client
from paddock_cli.config import ConfigError, Credentials

VERSION_SETTLED = ("ready", "failed")
POLL_SECONDS = 0.5


class PaddockGroup(click.Group):
    """The root group: an ApiError or ConfigError from any command ends it with the message and status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            ctx.ensure_object(Output).fail(exc.message, exc.status)
        except ConfigError as exc:
            ctx.ensure_object(Output).fail(str(exc))


@click.group(cls=PaddockGroup, context_settings={"help_option_names": ["-h", "--help"]})
@json_option
@click.version_option(package_name="paddock")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Paddock from the command line: models, versions, rollouts and live figures over the
    management API. Log in first: paddock login URL."""
    ctx.ensure_object(Output)


# -- credentials -----------------------------------------------------------------------------

@cli.command()
@click.argument("url")
@click.option("--token", help="An API token with the read scope at least (manage to change things); "
                              "asked for, not echoed, when omitted.")
@json_option
@click.pass_obj
def login(output: Output, url: str, token: str | None) -> None:
    """Check a token against the server at URL, then keep both for the other commands (a file
    only you can read)."""
    url = config.normalize_url(url)
    if token is None:
        # Piped in (`pass show paddock | paddock login URL`): the line itself. getpass would read
        # the controlling terminal instead of the pipe.
        if sys.stdin.isatty():
            token = str(click.prompt("API token", hide_input=True, err=True))
        else:
            token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise ConfigError("no token given: pass --token, pipe it in, or type it when asked")
    if config.sends_token_in_clear(url):
        output.note(f"warning: {url} is plain http: the token crosses the network unencrypted")
    Client(url, token).check()
    path = config.save(Credentials(url, token))
    output.result({"url": url, "credentials": str(path)},
                  lambda: f"logged in to {url} (credentials in {path}, readable by you only)")


@cli.command()
@json_option
@click.pass_obj
def logout(output: Output) -> None:
    """Forget the stored URL and token (the token itself stays valid: revoke it in the console)."""
    path = config.remove()
    output.result({"removed": str(path) if path else None},
                  lambda: f"removed {path}" if path else "not logged in: nothing to remove")


@cli.command()
@json_option
@click.pass_obj
def whoami(output: Output) -> None:
    """Who the stored token (or PADDOCK_TOKEN) belongs to: the person, the token's scopes and
    expiry, the teams and roles."""
    me = connect().whoami()
    output.result(me, lambda: render.whoami(me))


# -- models and versions ---------------------------------------------------------------------

@cli.group()
def models() -> None:
    """Registered models and their versions."""


@models.command("list")
@click.option("-q", "--query", default="", help="Text in the name or description, any case.")
@click.option("--tag", default="", help="Only models carrying this tag.")
@json_option
@click.pass_obj
def models_list(output: Output, query: str, tag: str) -> None:
    """The models you can see: team, latest version, aliases, tags."""
    found = connect().models(query, tag)
    output.result(found, lambda: render.models(found))


@models.command("versions")
@click.argument("model")
@json_option
@click.pass_obj
def models_versions(output: Output, model: str) -> None:
    """MODEL's versions, newest first, with their validation status."""
    found = connect().versions(model)
    output.result(found, lambda: render.versions(found))


@contextmanager
def progress(output: Output, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (none under --json); yields the function that advances it."""
    if output.json:
        yield lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=output.stderr) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def wait_for_validation(output: Output, client: Client, version: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Poll the version until a worker has validated it (ready or failed); ApiError past `timeout`."""
    deadline = time.monotonic() + timeout
    model, number = version["model"], version["number"]
    with nullcontext() if output.json else output.stderr.status(f"validating {model} v{number}…"):
        while version["status"] not in VERSION_SETTLED:
            if time.monotonic() > deadline:
                raise ApiError(f"{model} v{number} is still {version['status']} after {timeout:g} s; "
                               f"`paddock models versions {model}` shows it later")
            time.sleep(POLL_SECONDS)
            version = client.version(model, number)
    return version


@cli.command()
@click.argument("model")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "artifact_format", type=click.Choice(["onnx", "torchscript"]),
              help="Detected from the bytes when omitted.")
@click.option("--signature", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TorchScript: a JSON file declaring inputs and outputs (docs/api.md).")
@click.option("--description", default="", help="What this version is.")
@click.option("--external-data", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file the ONNX model reads as external data; repeat for each.")
@click.option("--timeout", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="Seconds to wait for the validation.")
@json_option
@click.pass_obj
def upload(output: Output, model: str, file: Path, artifact_format: str | None, signature: Path | None,
           description: str, external_data: tuple[Path, ...], timeout: float) -> None:
    """Upload FILE as a new version of MODEL (progress bar), wait until a worker has validated it,
    print the report. Exit status 1 when validation failed."""
    client = connect()
    fields = {"description": description}
    if artifact_format:
        fields["format"] = artifact_format
    if signature:
        fields["signature"] = signature.read_text(encoding="utf-8")
    total = file.stat().st_size + sum(extra.stat().st_size for extra in external_data)
    with progress(output, f"uploading {file.name}", total) as advance:
        version, created = client.upload(model, file, fields=fields, external_data=list(external_data),
                                         on_sent=advance)
    version = wait_for_validation(output, client, version, timeout)
    output.result(version, lambda: render.version_report(version, created))
    if version["status"] == "failed":
        output.note(f"error: {model} v{version['number']} failed validation: {version['status_reason']}")
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("model")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--alias", default="champion", show_default=True, help="The alias to move.")
@json_option
@click.pass_obj
def promote(output: Output, model: str, version: int, alias: str) -> None:
    """Point MODEL's champion alias (or --alias) at VERSION. The champion serves unless the
    deployment names an active version; a rollout moves traffic step by step instead."""
    client = connect()
    moved = client.set_alias(model, alias, version)
    output.result(moved, lambda: f"{model}: {moved['name']} -> v{moved['version']}")
    if alias == "champion":
        try:
            pinned = client.deployment(model).get("active_version")
        except ApiError:  # only a note depends on it: the alias has moved, which is what was asked
            return
        if pinned is not None and pinned != version:
            output.note(f"note: the deployment of {model} names v{pinned} as its active version, so v{version} "
                        "does not serve yet (paddock rollout start moves traffic)")


cli.add_command(traffic.rollout)
cli.add_command(traffic.tail)
