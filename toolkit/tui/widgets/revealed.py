"""Where revealed secrets appear — and the only widget that ever holds one.

It renders masked whenever the app is capturing the screen (SVG screenshot from the command
palette, `export_screenshot`), unless the operator asked for the values to be included. Text
selection is off for it, so a mouse drag cannot copy a secret either: copying is the explicit
`c` key. The screen that owns it calls `clear()` when it is left.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ...crypto import mask
from ...safe_text import escape_text

MASK = mask("", 0)


class RevealedValues(Widget):
    ALLOW_SELECT = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._values: dict[str, tuple[str, object]] = {}  # key -> (label, Secret)

    def reveal(self, key: str, label: str, secret) -> None:
        self._values[key] = (label, secret)
        self.refresh(layout=True)

    def secret(self, key: str):
        entry = self._values.get(key)
        return entry[1] if entry else None

    def forget(self, key: str) -> None:
        """Hide one value again."""
        self._values.pop(key, None)
        self.refresh(layout=True)

    def clear(self) -> None:
        """Forget every revealed value (the Secret objects are dropped with the dict)."""
        self._values = {}
        self.refresh(layout=True)

    @property
    def keys(self) -> list[str]:
        return list(self._values)

    def render(self) -> Text:
        if not self._values:
            return Text("No secret revealed. On a password field press v to reveal it (logged); "
                        "it is hidden again when you leave this screen.", style="dim")
        masked = getattr(self.app, "capturing_redacted", False)
        shown = Text()
        for n, (key, (label, secret)) in enumerate(self._values.items()):
            if n:
                shown.append("\n")
            shown.append(escape_text(f"{label} ({key}): "), style="bold")
            if masked:
                shown.append(MASK + "  (hidden in screenshots)", style="dim")
            else:
                shown.append(escape_text(secret.reveal()), style="reverse")
        return shown

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self._values))
