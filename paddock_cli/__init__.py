"""`paddock`, the command-line client of Paddock's management API: a pure HTTP client (requests),
no Django. Commands in main.py, the HTTP calls in client.py, where the credentials live in config.py,
what a person reads in render.py (docs/cli.md)."""
