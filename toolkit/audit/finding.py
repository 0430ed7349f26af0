"""One finding: the record of DESIGN.md §4.4, and nothing else (never a secret's value)."""

from __future__ import annotations

import dataclasses

from ..codes import CODES, SEVERITY_RANK

FIELDS = ("code", "severity", "installation_id", "user_id", "app_id", "field", "message", "hint")
_CODE_ORDER = {code: n for n, code in enumerate(CODES)}


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: str
    installation_id: int | None
    user_id: int | None
    app_id: str | None
    field: str | None
    message: str
    hint: str

    @classmethod
    def of(cls, code, installation_id=None, user_id=None, app_id=None, field=None, message="") -> "Finding":
        """A finding of `code`, its severity and hint taken from the codes table."""
        entry = CODES[code]
        return cls(code, entry.severity, installation_id, user_id, app_id, field, message, entry.hint)

    @classmethod
    def from_dict(cls, data: dict) -> "Finding":
        return cls(**{name: data.get(name) for name in FIELDS})

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in FIELDS}

    @property
    def key(self) -> tuple:
        """Identity across runs (baselines): what is wrong where — not the wording of the message."""
        return (self.code, self.installation_id, self.user_id, self.app_id, self.field)

    @property
    def sort_key(self) -> tuple:
        return sort_key(self.code, self.severity, self.installation_id, self.user_id, self.field)


def sort_key(code, severity, installation_id, user_id, field) -> tuple:
    """THE order of a report: most severe first, then the codes table's order, installation,
    user, field. `Finding.sort_key` and the spill store's merge (report order on disk) share it."""
    return (
        -SEVERITY_RANK.get(severity, 0),
        _CODE_ORDER.get(code, len(_CODE_ORDER)),
        installation_id or 0,
        user_id or 0,
        field or "",
    )


def code_order(code) -> int:
    """A code's place in the codes table (unknown codes after every known one)."""
    return _CODE_ORDER.get(code, len(_CODE_ORDER))
