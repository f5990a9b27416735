"""Where a command's progress lines go: one rule for every command that can print a report as JSON."""

from __future__ import annotations

import click


def progress_echo(as_json: bool):
    """click.echo for progress; with --json it writes to stderr, so stdout carries only the report."""
    if not as_json:
        return click.echo
    return lambda *a, **k: click.echo(*a, **{**k, "err": True})
