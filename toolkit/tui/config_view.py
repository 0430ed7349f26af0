"""One installation's config as the rows the detail screen shows — secrets never in clear.

Registry fields come first, in registry order (with their labels and types), then keys the
registry does not define. A password field shows a mask and what the keyring makes of the
stored value (current key, previous key, plaintext, malformed…), never the value itself;
only an explicit reveal (screens/installation.py) decrypts it for display. Any value shaped
like a ciphertext is masked too, whatever the field (an unknown app, a non-password field).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.text import Text

from ..crypto import looks_encrypted, mask, parse_ciphertext
from ..errors import MalformedCiphertext
from . import cells

NOT_SET = "(not set)"
DOTS_MASK = mask("", 0)  # dots only: nothing of the value, not even its length


@dataclasses.dataclass(frozen=True)
class ConfigRow:
    key: str
    label: str
    type: str  # the registry's type, or "unknown" for a key it does not define
    is_secret: bool  # masked: a password field, or a value shaped like a ciphertext
    value: Text  # what the table shows
    state: str  # one line on how the value is stored (secrets) or "" (plain values)
    present: bool
    stored: Any = dataclasses.field(default=None, repr=False)  # kept for an explicit reveal only

    @property
    def revealable(self) -> bool:
        return self.is_secret and isinstance(self.stored, str) and self.stored != ""


def config_rows(config, app, keyring) -> list[ConfigRow]:
    """Display rows for a config object (callers check `isinstance(config, dict)` first)."""
    config = config or {}
    rows = []
    fields = list(app.fields) if app is not None else []
    known = set()
    for field in fields:
        known.add(field.key)
        present = field.key in config
        rows.append(_row(field.key, field.label, field.type, field.is_secret, config.get(field.key), present, keyring))
    for key in config:
        if key not in known:
            rows.append(_row(key, key, "unknown", False, config[key], True, keyring))
    return rows


def describe_non_object(config) -> str:
    """What is stored instead of an object — its JSON type and size, not its content."""
    kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(config), type(config).__name__
    )
    size = f" of {len(config)} {'items' if isinstance(config, list) else 'characters'}" if isinstance(config, (list, str)) else ""
    return f"config is {kind}{size}, not a JSON object: the app cannot read it (audit code config.not-object)"


def _row(key, label, type_, is_secret, value, present, keyring) -> ConfigRow:
    if not present:
        return ConfigRow(key, label, type_, is_secret, Text(NOT_SET, style="dim"), "", False)
    if is_secret:
        state = secret_state(value, keyring)
        return ConfigRow(key, label, type_, True, _masked(state), state, True, value)
    if isinstance(value, str) and looks_encrypted(value):
        state = "a ciphertext in a non-secret field"
        return ConfigRow(key, label, type_, True, _masked(state), state, True, value)
    if value is not None and not isinstance(value, str):
        return ConfigRow(key, label, type_, False, cells.text(value, "magenta"), "not a string", True, value)
    return ConfigRow(key, label, type_, False, cells.text(value), "", True, value)


def _masked(state: str) -> Text:
    shown = Text(DOTS_MASK, style="bold")
    shown.append(f"  {state}", style="dim" if state.startswith("encrypted") else "yellow")
    return shown


def secret_state(value, keyring) -> str:
    """How a password field's value is stored, in a few words. The plaintext is dropped."""
    if value is None:
        return "null"
    if not isinstance(value, str):
        return f"not a string ({type(value).__name__})"
    if value == "":
        return "empty"
    if keyring is None:
        if not looks_encrypted(value):
            return "stored as PLAINTEXT"
        try:
            parse_ciphertext(value)
        except MalformedCiphertext:
            return "malformed ciphertext"
        return "encrypted (no key configured)"
    status = keyring.inspect(value)
    if status.kind == "current":
        return "encrypted · current key"
    if status.kind == "previous":
        return f"encrypted · previous key #{status.key_index} (stale)"
    if status.kind == "undecryptable":
        return "cannot decrypt: wrong key or tampered"
    if status.kind == "malformed":
        return "malformed ciphertext"
    return "stored as PLAINTEXT"
