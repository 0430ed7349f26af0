"""Parameter types the commands share."""

from __future__ import annotations

import click

from ..errors import UsageError
from ..ids import parse_id


class _Id(click.ParamType):
    """A row id: ASCII digits only (`toolkit.ids`), never `int("١٢")` == 12 as click's INT."""

    name = "id"

    def convert(self, value, param, ctx):
        try:
            return parse_id(value)
        except UsageError as exc:
            self.fail(exc.message, param, ctx)


ID = _Id()
