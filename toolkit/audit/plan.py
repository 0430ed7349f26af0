"""The per-installation routine: the checks of `checks.py`, composed once per run.

`Auditor` is compiled from the registry, the keyring and the selected codes before any row
is read (and, on PostgreSQL, before worker processes fork, so each inherits it). Per row it
does the least that answers every selected code: one JSON parse, the registry's one-pass
config check, one `keyring.inspect` per stored secret (the same result answers plaintext,
malformed, undecryptable, stale-key and nonce reuse), and nothing on the clean path that
allocates a finding. Findings leave as plain tuples
`(code, installation_id, user_id, app_id, field, message)`; the engine turns them into
`Finding`s once, at the end.
"""

from __future__ import annotations

from typing import NamedTuple

from ..crypto import looks_encrypted
from . import checks
from .codes import ALL_CODES
from .nonces import IVLog

_SECRET_CODES = frozenset({
    "secret.plaintext", "secret.malformed", "secret.undecryptable", "secret.stale-key",
    "secret.nonce-reuse", "status.not-configured",  # validity of required secrets
})
_CIPHERTEXT_IN_PLAIN_FIELDS = frozenset({"field.unexpected-ciphertext", "secret.nonce-reuse"})
_CONFIG_CODES = frozenset(ALL_CODES) - {"app.unknown", "installation.timestamps", "user.email-case-duplicate"}
_STATUS = {b"installed": "installed", b"configured": "configured", "installed": "installed", "configured": "configured"}


class AppPlan(NamedTuple):
    app_id: str
    validate: object  # AppDefinition.validate
    app: object  # AppDefinition
    secrets: tuple  # ((key, slot), …) of the password fields
    plain_slots: dict  # key -> slot of the other defined fields (unexpected ciphertext)
    required_keys: tuple


class Auditor:
    """Audits installations one at a time; collects finding tuples and IV traces."""

    def __init__(self, registry, keyring, codes=ALL_CODES):
        self.codes = frozenset(codes)
        self.inspect = keyring.inspect
        self.key_count = len(keyring)
        self.reads_config = bool(self.codes & _CONFIG_CODES)
        self.decrypts = bool(self.codes & _SECRET_CODES)
        self.scans_plain = bool(self.codes & _CIPHERTEXT_IN_PLAIN_FIELDS)
        self.checks_status = "status.not-configured" in self.codes
        self.slots: list[tuple[str, str]] = []  # slot -> (app_id, field), for IV traces
        self.plans: dict = {}
        for app_id, app in registry.apps.items():
            plan = self._compile(app_id, app)
            self.plans[app_id] = plan
            # COPY hands us bytes: look the plan up without decoding every row's app_id.
            self.plans[app_id.encode("utf-8")] = plan
        self.findings: list[tuple] = []
        self.ivs = IVLog()
        self.rows = 0

    def _slot(self, app_id: str, key: str) -> int:
        self.slots.append((app_id, key))
        return len(self.slots) - 1

    def _compile(self, app_id, app) -> AppPlan:
        secrets = tuple((f.key, self._slot(app_id, f.key)) for f in app.fields if f.is_secret)
        plain = {f.key: self._slot(app_id, f.key) for f in app.fields if not f.is_secret}
        return AppPlan(app_id, app.validate, app, secrets, plain, tuple(app.required_keys))

    # ---- the hot path ------------------------------------------------------------------
    def audit_copy_line(self, line: bytes) -> None:
        """One row of `COPY (SELECT id, user_id, app_id, status, timestamps, config) TO STDOUT`."""
        if b"\\" in line:
            fields = [_unescape_copy(field) for field in line[:-1].split(b"\t")]
        else:
            fields = line[:-1].split(b"\t")
        self.audit(*fields)

    def audit(self, installation_id, user_id, app_id, status, timestamps, raw_config) -> None:
        """One installation. Ids and app_id may be bytes (COPY) or str/int (SQLite)."""
        self.rows += 1
        out = self.findings
        if timestamps:
            message = checks.timestamps_problem(_str(timestamps))
            out.append(("installation.timestamps", installation_id, user_id, _str(app_id), None, message))
        plan = self.plans.get(app_id)
        if plan is None:
            app_id = checks.safe_name(_str(app_id))
            out.append(("app.unknown", installation_id, user_id, app_id, None,
                        f"app '{app_id}' is not in the registry"))
            return
        if not self.reads_config:
            return
        app_id = plan.app_id
        config = checks.load_config(raw_config)
        if config.__class__ is not dict:
            out.append(("config.not-object", installation_id, user_id, app_id, None,
                        checks.config_not_object(config)))
            return
        status = _STATUS.get(status, status)
        bad = None  # fields with a finding (status.not-configured needs them)
        problems = plan.validate(config, status=status)
        if problems:
            bad = set()
            for problem in problems:
                out.append((problem.code, installation_id, user_id, app_id,
                            _field_name(problem.field), problem.message))
                bad.add(problem.field)
        if self.decrypts:
            inspect = self.inspect
            for key, slot in plan.secrets:
                value = config.get(key)
                if value.__class__ is not str or value == "":
                    continue  # absent, blank (not set) or config.non-string: reported above
                status_of_value = inspect(value)
                if status_of_value.key_index is not None:
                    self.ivs.add(status_of_value.iv, status_of_value.key_index, slot,
                                 int(installation_id), int(user_id))
                    if status_of_value.key_index == 0 and status_of_value.plaintext.isascii():
                        continue  # the clean path: current key, plain ASCII
                for code, message in checks.secret_problems(status_of_value, self.key_count):
                    out.append((code, installation_id, user_id, app_id, key, message))
                    if bad is None:
                        bad = set()
                    bad.add(key)
        if self.scans_plain:
            plain_slots = plan.plain_slots
            for key, value in config.items():
                # Cheap filters first: a ciphertext has two ':' and the shape.
                if value.__class__ is not str or value.count(":") < 2:
                    continue
                slot = plain_slots.get(key)
                if slot is None or not looks_encrypted(value):
                    continue
                status_of_value = self.inspect(value)
                message = checks.unexpected_ciphertext(status_of_value)
                if message is not None:
                    self.ivs.add(status_of_value.iv, status_of_value.key_index, slot,
                                 int(installation_id), int(user_id))
                    out.append(("field.unexpected-ciphertext", installation_id, user_id, app_id, key, message))
                    if bad is None:
                        bad = set()
                    bad.add(key)
        if self.checks_status and status == "installed":
            message = checks.not_configured(status, plan.required_keys, config, bad or ())
            if message is not None:
                out.append(("status.not-configured", installation_id, user_id, app_id, None, message))


def _str(value) -> str:
    return value.decode("utf-8", "replace") if value.__class__ is bytes else value


def _field_name(key):
    return None if key is None else checks.safe_name(key)


_COPY_ESCAPES = {
    b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v", b"\\": b"\\",
}


def _unescape_copy(field: bytes):
    r"""COPY text format: `\N` is NULL; `\\`, `\n`, `\t`… and octal/hex escapes are bytes."""
    if field == b"\\N":
        return None
    if b"\\" not in field:
        return field
    out = bytearray()
    i, n = 0, len(field)
    while i < n:
        j = field.find(b"\\", i)
        if j < 0 or j == n - 1:
            out += field[i:]
            break
        out += field[i:j]
        char = field[j + 1:j + 2]
        if char in _COPY_ESCAPES:
            out += _COPY_ESCAPES[char]
            i = j + 2
        elif char.isdigit():
            digits = field[j + 1:j + 4]
            k = 0
            while k < len(digits) and digits[k:k + 1] in b"01234567":
                k += 1
            out.append(int(digits[:k], 8) & 0xFF)
            i = j + 1 + k
        elif char == b"x" and field[j + 2:j + 3] and field[j + 2:j + 3] in b"0123456789abcdefABCDEF":
            digits = field[j + 2:j + 4]
            if not all(d in b"0123456789abcdefABCDEF" for d in digits[1:2]):
                digits = digits[:1]
            out.append(int(digits, 16))
            i = j + 2 + len(digits)
        else:  # an unknown escape stands for the character itself
            out += char
            i = j + 2
    return bytes(out)
