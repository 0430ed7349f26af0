"""The secrets the operator revealed on the installation screen: the one place that holds them.

A revealed value is shown in its own row of the config table, instead of its mask, until it
is hidden again (`v`) or the screen is left (then `clear()`). Nothing else keeps a plaintext:
the config table (a DataTable: no text selection, so a mouse drag cannot copy it) draws it
from here, screenshots draw the mask instead (app._redacted), and copying is the explicit
`c` key (clipboard only, never a file).
"""

from __future__ import annotations


class RevealedValues:
    def __init__(self):
        self._values: dict[str, object] = {}  # field key -> Secret (masked in any repr)

    def reveal(self, key: str, secret) -> None:
        self._values[key] = secret

    def secret(self, key: str):
        return self._values.get(key)

    def forget(self, key: str) -> None:
        """Hide one value again."""
        self._values.pop(key, None)

    def clear(self) -> None:
        """Forget every revealed value (the Secret objects are dropped with the dict)."""
        self._values = {}

    @property
    def keys(self) -> list[str]:
        return list(self._values)
