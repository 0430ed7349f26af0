"""What is wrong with one config: a `Problem` per field, with a stable code.

The codes are the config-level subset of the audit codes (DESIGN.md §4.4); the audit adds
severity, ids and hints around them. Messages name fields and rules, never values: a value
may be a secret.
"""

from __future__ import annotations

import dataclasses

from ..codes import CONFIG_NON_STRING, CONFIG_NOT_OBJECT, FIELD_INVALID, FIELD_MISSING, FIELD_UNKNOWN

PROBLEM_CODES = (CONFIG_NOT_OBJECT, CONFIG_NON_STRING, FIELD_UNKNOWN, FIELD_MISSING, FIELD_INVALID)


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    code: str
    field: str | None  # None for whole-config problems
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field is not None else ""
        return f"{where}{self.message} [{self.code}]"
