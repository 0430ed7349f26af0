"""THE table of audit codes (DESIGN.md §4.4): id, severity, what it means, what to do, and
the facts about each check that the rest of the toolkit derives its behaviour from.

Codes are an API: scripts, baselines and the dashboard match on them, so an id never
changes meaning. Every other module names a code by its constant here, never by a string
literal (a test checks). Per code the table also says:

- `reads`: which columns its check needs, so a narrowed audit (`--code`) reads less;
- `statuses`: on which installation statuses it can fire, and `rows`: which other rows
  alone can hold it (an unknown app id, updated_at < installed_at) — the SQL filters of
  `audit.sql` are derived from these;
- `decrypts`: its check needs password values opened with the keyring;
- `scans_plain`: its check needs the ciphertexts sitting outside password fields;
- `across_rows`: it compares rows with each other (not a per-row rule).

A leaf module (no toolkit imports): the registry's Problems, the audit, repairs, the
dashboard and the notebooks all take their codes from here.
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
# Which rows alone can hold a code (beyond its statuses): `rows` in the table.
UNKNOWN_APP_ROWS = "app_id not in the registry"
TIMESTAMP_ROWS = "updated_at < installed_at"

APP_UNKNOWN = "app.unknown"
CONFIG_NOT_OBJECT = "config.not-object"
CONFIG_NON_STRING = "config.non-string"
FIELD_UNKNOWN = "field.unknown"
FIELD_MISSING = "field.missing"
FIELD_INVALID = "field.invalid"
FIELD_UNEXPECTED_CIPHERTEXT = "field.unexpected-ciphertext"
SECRET_PLAINTEXT = "secret.plaintext"
SECRET_MALFORMED = "secret.malformed"
SECRET_UNDECRYPTABLE = "secret.undecryptable"
SECRET_STALE_KEY = "secret.stale-key"
SECRET_NONCE_REUSE = "secret.nonce-reuse"
STATUS_NOT_CONFIGURED = "status.not-configured"
INSTALLATION_TIMESTAMPS = "installation.timestamps"
USER_EMAIL_CASE_DUPLICATE = "user.email-case-duplicate"


@dataclasses.dataclass(frozen=True)
class Code:
    id: str
    severity: str
    when: str  # one line: the condition, as in DESIGN.md §4.4
    hint: str  # what the operator does about it
    reads: frozenset = frozenset({CONFIG})
    statuses: frozenset = BOTH_STATUSES
    rows: str | None = None  # UNKNOWN_APP_ROWS / TIMESTAMP_ROWS: only such rows can hold it
    decrypts: bool = False
    scans_plain: bool = False
    across_rows: bool = False


def _code(id, severity, when, hint, reads=(CONFIG,), statuses=BOTH_STATUSES, **facts):
    return Code(id, severity, when, hint, frozenset(reads), frozenset(statuses), **facts)


_TABLE = (
    _code(APP_UNKNOWN, ERROR, "app_id is not in the registry",
          "Export the registry again from the app (TOOLKIT_REGISTRY); if the app was removed, "
          "uninstall the installation.", reads=(APP,), rows=UNKNOWN_APP_ROWS),
    _code(CONFIG_NOT_OBJECT, ERROR, "config is not a JSON object (NULL counts as {})",
          "The app expects a flat object of strings: rewrite the config as an object, or reset it "
          "to {} and set the status back to installed."),
    _code(CONFIG_NON_STRING, ERROR, "a config value is not a string",
          "The app expects Record<string, string>: store the value as a string (or remove the key)."),
    _code(FIELD_UNKNOWN, WARNING, "a key the app's registry entry does not define",
          "Remove the key (toolkit repair --fix field.unknown), or add the field to the app's registry "
          "if the app really uses it."),
    _code(FIELD_MISSING, ERROR, "a required field is absent or empty on a configured installation",
          "Ask the customer to complete the settings, or set the status back to installed.",
          statuses=("configured",), decrypts=True),  # a required secret that decrypts to "" is missing
    _code(FIELD_INVALID, ERROR, "a value fails its type: url, email, number, select option, pattern",
          "Correct the value in the app's settings form (it validates on save).",
          decrypts=True),  # a password field's pattern applies to its decrypted value
    _code(FIELD_UNEXPECTED_CIPHERTEXT, WARNING, "a non-password field holds a value that decrypts",
          "The field was encrypted by mistake: decrypt it (toolkit decrypt) and store the plain value.",
          scans_plain=True),
    _code(SECRET_PLAINTEXT, ERROR, "a password field's value is not in the encrypted format",
          "Encrypt it with the current key: toolkit repair --fix secret.plaintext (or re-save it in the app).",
          decrypts=True),
    _code(SECRET_MALFORMED, ERROR, "iv:tag:ciphertext shape, but bad hex, IV not 12/16 bytes or tag not 16 bytes",
          "The value was damaged (truncated or edited): ask the customer to enter the secret again.",
          decrypts=True),
    _code(SECRET_UNDECRYPTABLE, ERROR, "no key in the keyring authenticates it (wrong key or tampered)",
          "Add the key it was written with to ENCRYPTION_KEY_PREVIOUS; if none fits, ask the "
          "customer to enter the secret again.", decrypts=True),
    _code(SECRET_STALE_KEY, WARNING, "it decrypts only with a previous key (in any field of any app)",
          "Rotate it to the current key: toolkit keys rotate.", decrypts=True, scans_plain=True),
    _code(SECRET_NONCE_REUSE, ERROR, "the same IV appears in two or more ciphertexts under one key",
          "Re-encrypt the affected values with fresh random IVs: toolkit keys rotate --include-current; "
          "then fix the writer that reused the IV.", decrypts=True, scans_plain=True, across_rows=True),
    _code(STATUS_NOT_CONFIGURED, INFO, "status is installed but every required field is present and valid",
          "Set the status to configured if the customer finished the setup: "
          "toolkit repair --fix status.not-configured.", statuses=("installed",),
          decrypts=True),  # its required secrets must be valid
    _code(INSTALLATION_TIMESTAMPS, WARNING, "updated_at is earlier than installed_at",
          "Check the writer that set the timestamps; set updated_at to now() on the next write.",
          reads=(TIMESTAMPS,), rows=TIMESTAMP_ROWS),
    _code(USER_EMAIL_CASE_DUPLICATE, WARNING, "two users' emails are equal ignoring case",
          "Merge the accounts or correct the address; logins that lower-case emails can pick the wrong user.",
          reads=(USERS,), across_rows=True),
)

CODES: dict[str, Code] = {code.id: code for code in _TABLE}
ALL_CODES = tuple(CODES)
# Derived facts, for the audit's plan and SQL.
DECRYPTING_CODES = frozenset(c.id for c in _TABLE if c.decrypts)
PLAIN_SCANNING_CODES = frozenset(c.id for c in _TABLE if c.scans_plain)
CONFIG_READING_CODES = frozenset(c.id for c in _TABLE if CONFIG in c.reads)
INSTALLATION_CODES = tuple(c.id for c in _TABLE if USERS not in c.reads)  # read from app_installations


def at_or_above(severity: str, level: str) -> bool:
    """Does a finding of `severity` reach the fail level `level`?"""
    return level != "never" and SEVERITY_RANK[severity] >= SEVERITY_RANK[level]


def select_codes(patterns) -> frozenset[str]:
    """Expand `--code` arguments: exact ids, a prefix (`secret`, `secret.`) or a glob (`field.*`).

    An empty selection means every code. A pattern matching nothing is a usage error.
    """
    from .errors import UsageError

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
