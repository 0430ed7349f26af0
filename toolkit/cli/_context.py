"""Helpers the command modules share."""

from __future__ import annotations

import click

from ..errors import ExitCode

pass_context = click.make_pass_decorator(object)


def get_context():
    """The toolkit `Context` of the running command."""
    return click.get_current_context().find_root().obj


def exit_with(code: ExitCode) -> None:
    click.get_current_context().exit(int(code))
