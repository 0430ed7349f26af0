"""Helpers the command modules share."""

from __future__ import annotations

import sys

import click

from ..errors import ExitCode

pass_context = click.make_pass_decorator(object)


def get_context():
    """The toolkit `Context` of the running command."""
    return click.get_current_context().find_root().obj


def read_value(value: str | None, what: str) -> str:
    """VALUE from the argument, else one line from stdin (keeps secrets out of shell history)."""
    if value is not None:
        return value
    if sys.stdin is None or sys.stdin.isatty():
        click.echo(f"{what} (input hidden): ", err=True, nl=False)
        import getpass

        return getpass.getpass(prompt="")
    data = sys.stdin.read()
    return data[:-1] if data.endswith("\n") else data


def exit_with(code: ExitCode) -> None:
    click.get_current_context().exit(int(code))
