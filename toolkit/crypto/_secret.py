"""`Secret`: a decrypted value that shows a mask wherever it is rendered.

Every way Python, logging, JSON libraries, rich, IPython and Jupyter turn an object into
text goes through `repr`, `str`, `format`, `__rich__`, `_repr_html_` or `_repr_pretty_` —
all of them give the mask, e.g. `••••••3f9a`. Only `.reveal()` returns the plaintext.

- The mask is six dots, plus the last `visible` characters when the secret is at least
  three times that long (so a mask never shows more than a third of a value). `visible=0`
  shows dots only. The dots never vary with the length, so the mask does not leak it.
- JSON: `json.dumps` refuses a Secret (TypeError, no leak). Pass `default=json_default`
  (works for `json` and `orjson`) to serialise the mask; `Secret.to_json()` / `__json__()`
  give the mask too.
- Pickling and copying to another process are refused (a pickle is a file of plaintext);
  `copy.copy` returns the same immutable object.
- Equality compares plaintexts in constant time between two Secrets only; a Secret never
  equals a `str` (so `secret == "guess"` is always False — compare `reveal()` explicitly).
- The plaintext is held in a closure, not an attribute, so generic inspectors
  (`vars`, `rich.inspect(…, private=True)`, debuggers listing attributes) do not show it.
- Invalid UTF-8: `Secret.from_bytes` decodes with `errors="replace"` — what the app's
  `decipher.update(…, "utf8")` returns for the same bytes — and sets `invalid_utf8=True`
  so callers (the audit) can flag it.
"""

from __future__ import annotations

import hashlib
import hmac
import html

DOTS = "••••••"


def mask(plaintext: str, visible: int = 4) -> str:
    """The mask of a plaintext: dots, plus the tail when the value is long enough."""
    if visible > 0 and len(plaintext) >= 3 * visible:
        return DOTS + plaintext[-visible:]
    return DOTS


class Secret:
    __slots__ = ("_get", "_mask", "invalid_utf8", "__weakref__")

    def __init__(self, plaintext: str, visible: int = 4, *, invalid_utf8: bool = False):
        if not isinstance(plaintext, str):
            raise TypeError("Secret() takes a str; use Secret.from_bytes for bytes")
        self._get = lambda: plaintext
        self._mask = mask(plaintext, visible)
        self.invalid_utf8 = invalid_utf8

    @classmethod
    def from_bytes(cls, data: bytes, visible: int = 4) -> "Secret":
        try:
            return cls(data.decode("utf-8"), visible)
        except UnicodeDecodeError:
            return cls(data.decode("utf-8", errors="replace"), visible, invalid_utf8=True)

    def reveal(self) -> str:
        """The plaintext. Front ends record the reveal in the access log first."""
        return self._get()

    @property
    def masked(self) -> str:
        return self._mask

    @property
    def is_empty(self) -> bool:
        return not self._get()

    # --- every rendering gives the mask -------------------------------------------------
    def __repr__(self) -> str:
        return f"Secret({self._mask})"

    def __str__(self) -> str:
        return self._mask

    def __format__(self, spec: str) -> str:
        return format(self._mask, spec)

    def __rich__(self):
        from rich.text import Text

        return Text(self._mask, style="dim")

    def __rich_repr__(self):
        yield self._mask

    def _repr_html_(self) -> str:
        return f'<span class="toolkit-secret" title="secret (masked)">{html.escape(self._mask)}</span>'

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))

    def to_json(self) -> str:
        return self._mask

    __json__ = to_json

    # --- no plaintext through pickles, comparisons with strings or hashes ---------------
    def __reduce_ex__(self, protocol):
        raise TypeError("Secret values cannot be pickled; pass the ciphertext instead")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __eq__(self, other):
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._get().encode("utf-8"), other._get().encode("utf-8"))

    def __hash__(self):
        # A digest, not the builtin str hash, so the hash is no oracle beyond equality.
        return hash(hashlib.sha256(self._get().encode("utf-8")).digest())


def json_default(value):
    """`default=` hook for `json.dumps` and `orjson.dumps`: Secrets serialise as their mask."""
    if isinstance(value, Secret):
        return value.masked
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
