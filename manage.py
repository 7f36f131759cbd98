#!/usr/bin/env python
"""Django's command-line utility for Paddock."""
import os
import sys

# What a checkout with nothing configured runs on: `make run`'s embedded defaults (Makefile:
# DEBUG=${DEBUG:-1}; SQLite under var/), so that `python manage.py create_token admin` reaches the
# database `make run` made. Any of these set means the environment is someone's configuration, and
# the settings judge it as they are (DEBUG=0 and no SECRET_KEY still refuse); production always sets
# DATABASE_URL (docker-compose.yml), and servers started without manage.py never get the defaults.
CONFIGURED_BY = ("DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "DATABASE_URL")


def apply_make_run_defaults() -> None:
    """DEBUG=1, as `make run` sets it, when Paddock's own settings run with none of CONFIGURED_BY
    in the environment; says so on stderr."""
    if os.environ["DJANGO_SETTINGS_MODULE"] != "console.settings" or any(
            name in os.environ for name in CONFIGURED_BY):
        return
    os.environ["DEBUG"] = "1"
    print("manage.py: DEBUG, SECRET_KEY and DATABASE_URL are unset: using make run's development settings "
          "(DEBUG=1, SQLite under var/)", file=sys.stderr)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    apply_make_run_defaults()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
