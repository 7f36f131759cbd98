"""`python -m paddock_cli`: the same as the `paddock` script."""

from paddock_cli.main import cli

cli()
