"""THE table of audit codes (DESIGN.md §4.4): id, severity, what it means, what to do.

Codes are an API: scripts, baselines and the dashboard match on them, so an id never
changes meaning. `reads` says which columns a check needs, so the engine can read less
when `--code` narrows the audit; `statuses` says on which installation statuses it can
fire, so the engine can filter in SQL.
"""

from __future__ import annotations

import dataclasses
import fnmatch

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)  # most severe first
SEVERITY_RANK = {INFO: 1, WARNING: 2, ERROR: 3}
# --fail-on levels: the lowest severity that fails the run ("never": nothing does).
FAIL_LEVELS = (ERROR, WARNING, INFO, "never")

# What a check reads.
APP = "app_id"
CONFIG = "config"
TIMESTAMPS = "timestamps"
USERS = "users"
BOTH_STATUSES = frozenset({"installed", "configured"})


@dataclasses.dataclass(frozen=True)
class Code:
    id: str
    severity: str
    when: str  # one line: the condition, as in DESIGN.md §4.4
    hint: str  # what the operator does about it
    reads: frozenset = frozenset({CONFIG})
    statuses: frozenset = BOTH_STATUSES


def _code(id, severity, when, hint, reads=(CONFIG,), statuses=BOTH_STATUSES):
    return Code(id, severity, when, hint, frozenset(reads), frozenset(statuses))


_TABLE = (
    _code("app.unknown", ERROR, "app_id is not in the registry",
          "Export the registry again from the app (TOOLKIT_REGISTRY); if the app was removed, "
          "uninstall the installation.", reads=(APP,)),
    _code("config.not-object", ERROR, "config is not a JSON object (NULL counts as {})",
          "The app expects a flat object of strings: rewrite the config as an object, or reset it "
          "to {} and set the status back to installed."),
    _code("config.non-string", ERROR, "a config value is not a string",
          "The app expects Record<string, string>: store the value as a string (or remove the key)."),
    _code("field.unknown", WARNING, "a key the app's registry entry does not define",
          "Remove the key (toolkit repair --fix field.unknown), or add the field to the app's registry "
          "if the app really uses it."),
    _code("field.missing", ERROR, "a required field is absent or empty on a configured installation",
          "Ask the customer to complete the settings, or set the status back to installed.",
          statuses=("configured",)),
    _code("field.invalid", ERROR, "a value fails its type: url, email, number, select option, pattern",
          "Correct the value in the app's settings form (it validates on save)."),
    _code("field.unexpected-ciphertext", WARNING, "a non-password field holds a value that decrypts",
          "The field was encrypted by mistake: decrypt it (toolkit decrypt) and store the plain value."),
    _code("secret.plaintext", ERROR, "a password field's value is not in the encrypted format",
          "Encrypt it with the current key: toolkit repair --fix secret.plaintext (or re-save it in the app)."),
    _code("secret.malformed", ERROR, "iv:tag:ciphertext shape, but bad hex, IV not 12/16 bytes or tag not 16 bytes",
          "The value was damaged (truncated or edited): ask the customer to enter the secret again."),
    _code("secret.undecryptable", ERROR, "no key in the keyring authenticates it (wrong key or tampered)",
          "Add the key it was written with to ENCRYPTION_KEY_PREVIOUS; if none fits, ask the "
          "customer to enter the secret again."),
    _code("secret.stale-key", WARNING, "it decrypts only with a previous key",
          "Rotate it to the current key: toolkit keys rotate."),
    _code("secret.nonce-reuse", ERROR, "the same IV appears in two or more ciphertexts under one key",
          "Re-encrypt the affected values with fresh random IVs: toolkit keys rotate --include-current; "
          "then fix the writer that reused the IV."),
    _code("status.not-configured", INFO, "status is installed but every required field is present and valid",
          "Set the status to configured if the customer finished the setup: "
          "toolkit repair --fix status.not-configured.", statuses=("installed",)),
    _code("installation.timestamps", WARNING, "updated_at is earlier than installed_at",
          "Check the writer that set the timestamps; set updated_at to now() on the next write.",
          reads=(TIMESTAMPS,)),
    _code("user.email-case-duplicate", WARNING, "two users' emails are equal ignoring case",
          "Merge the accounts or correct the address; logins that lower-case emails can pick the wrong user.",
          reads=(USERS,)),
)

CODES: dict[str, Code] = {code.id: code for code in _TABLE}
ALL_CODES = tuple(CODES)


def severity_of(code: str) -> str:
    return CODES[code].severity


def hint_of(code: str) -> str:
    return CODES[code].hint


def at_or_above(severity: str, level: str) -> bool:
    """Does a finding of `severity` reach the fail level `level`?"""
    return level != "never" and SEVERITY_RANK[severity] >= SEVERITY_RANK[level]


def select_codes(patterns) -> frozenset[str]:
    """Expand `--code` arguments: exact ids, a prefix (`secret`, `secret.`) or a glob (`field.*`).

    An empty selection means every code. A pattern matching nothing is a usage error.
    """
    from ..errors import UsageError

    patterns = [p.strip() for p in (patterns or ()) if p and p.strip()]
    if not patterns:
        return frozenset(ALL_CODES)
    chosen = set()
    for pattern in patterns:
        if pattern in CODES:
            chosen.add(pattern)
            continue
        prefix = pattern.rstrip(".") + "."
        matched = [c for c in ALL_CODES if fnmatch.fnmatchcase(c, pattern) or c.startswith(prefix)]
        if not matched:
            raise UsageError(f"unknown audit code {pattern!r}", hint=f"codes: {', '.join(ALL_CODES)}")
        chosen.update(matched)
    return frozenset(chosen)
