"""Faults injected into real processes under load, measured (docs/reliability.md)."""
