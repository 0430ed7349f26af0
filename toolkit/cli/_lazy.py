"""A click group whose subcommands are imported only when run, so `toolkit decrypt` never
pays for Textual and `--help` lists every verb without importing any of them."""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """`lazy_commands`: {name: ("module:attribute" relative to toolkit.cli, one-line help)}."""

    def __init__(self, *args, lazy_commands=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx):
        return sorted(self.lazy_commands)

    def format_commands(self, ctx, formatter):
        rows = [(name, self.lazy_commands[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx, name):
        target = self.lazy_commands.get(name)
        if target is None:
            return None
        module_name, attribute = target[0].split(":")
        return getattr(importlib.import_module(f".{module_name}", __package__), attribute)
