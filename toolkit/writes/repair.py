"""Repairs: mechanical fixes of audit findings, each opt-in by its audit code.

    secret.plaintext        encrypt the password value with the current key (as the app would)
    status.not-configured   set the status from installed to configured
    field.unknown           remove the key the app does not define

What is a finding is the audit's business: each row goes through the audit's own
per-installation routine (`toolkit.audit.row_auditor.Auditor`) and only its findings are acted on —
nothing here re-implements a rule. The writing is the rotation's machinery
(`rewrite.run_rewrite`): keyset pages, one UPDATE per page, compare-and-swap, retries,
resumable, pooler-safe. The conditions:

- secret.plaintext and field.unknown change single keys: the row is written only if those
  keys still hold the values the audit judged (a write to another field does not block it);
  an unknown key holding a non-string value is compared with the whole config instead.
- status.not-configured depends on every required field: written only if the whole config
  and the status are still exactly as audited.

A repair is an edit of the record, so it sets `updated_at = now()` (rotation, which changes
nothing the app reads, does not). Fixes are planned from one reading of each row: a fix
that becomes possible only after another (e.g. the status once a required secret is
encrypted) is found by the next run.
"""

from __future__ import annotations

import dataclasses

from ..codes import FIELD_UNKNOWN, SECRET_PLAINTEXT, STATUS_NOT_CONFIGURED
from . import rewrite
from ..db import installations
from ..errors import AlreadyEncrypted, UsageError

FIXABLE = (SECRET_PLAINTEXT, STATUS_NOT_CONFIGURED, FIELD_UNKNOWN)
WHAT = {
    SECRET_PLAINTEXT: "encrypt the plaintext password value with the current key",
    STATUS_NOT_CONFIGURED: "set status installed -> configured",
    FIELD_UNKNOWN: "remove the key the app does not define",
}
_SKIPPED = "skipped:"
NOT_ENCRYPTABLE = "not valid Unicode text (cannot be encrypted as the app would)"
NOT_ADDRESSABLE = "the key's name is not valid Unicode"
_RESET_EVERY = 10_000


def check_fixes(fixes) -> tuple[str, ...]:
    """The requested codes, checked: each must be one this module can fix."""
    fixes = tuple(dict.fromkeys(f.strip() for f in fixes if f and f.strip()))
    if not fixes:
        raise UsageError("name at least one fix: --fix CODE", hint=f"fixable codes: {', '.join(FIXABLE)}")
    from ..codes import CODES

    for code in fixes:
        if code not in FIXABLE:
            known = "an audit code that cannot be fixed mechanically" if code in CODES else "not an audit code"
            raise UsageError(f"{code!r} is {known}", hint=f"fixable codes: {', '.join(FIXABLE)}")
    return fixes


class RepairPlanner:
    """Per row: the audit's findings among `fixes`, turned into one compare-and-swap change."""

    def __init__(self, registry, keyring, fixes):
        from ..audit.row_auditor import Auditor

        self.fixes = frozenset(check_fixes(fixes))
        self._args = (registry, keyring, tuple(self.fixes))
        self.auditor = Auditor(registry, keyring, self.fixes)
        self._audited = 0
        self.encrypt = keyring.encrypt

    def __reduce__(self):
        return (RepairPlanner, self._args)

    def plan(self, row: installations.Row) -> rewrite.Plan:
        auditor = self.auditor
        self._audited += 1
        if self._audited % _RESET_EVERY == 0:
            auditor.reset()  # the audit keeps IV traces (for nonce reuse); a repair needs none
        found = auditor.findings
        auditor.audit(row.id, 0, row.app_id, row.status, None, row.config_text)
        if not found:
            return rewrite.Plan(None)
        findings = [(f[0], f[4]) for f in found if f[0] in self.fixes]
        found.clear()
        if not findings:
            return rewrite.Plan(None)
        config = row.config  # a finding on a field implies the config is an object
        expect, patch, drop, tally = {}, {}, [], []
        whole = False
        status = None
        for code, field in findings:
            if code == STATUS_NOT_CONFIGURED:
                status = ("installed", "configured")
                whole = True
                tally.append(code)
                continue
            if field not in config:
                tally.append(f"{_SKIPPED}{code}:{NOT_ADDRESSABLE}")
                continue
            value = config[field]
            if code == SECRET_PLAINTEXT:
                try:
                    patch[field] = self.encrypt(value)
                except (UsageError, AlreadyEncrypted):
                    tally.append(f"{_SKIPPED}{code}:{NOT_ENCRYPTABLE}")
                    continue
                expect[field] = value
            elif code == FIELD_UNKNOWN:
                drop.append(field)
                if value.__class__ is str:
                    expect[field] = value
                else:
                    whole = True  # jsonb containment of arrays/objects is not equality
            tally.append(code)
        if not (patch or drop or status):
            return rewrite.Plan(None, tuple(tally))
        change = installations.Change(row.id, expect=expect, patch=patch, drop=tuple(drop), status=status,
                                 whole=whole, whole_config=row.config_text if whole else None, touch=True)
        return rewrite.Plan(change, tuple(tally))


@dataclasses.dataclass
class RepairReport:
    result: rewrite.RewriteResult
    fixes: tuple

    @property
    def complete(self) -> bool:
        return not self.result.left

    def fixed(self, code: str) -> int:
        return self.result.tally[code]

    def skipped(self) -> dict:
        found = {}
        for label, count in sorted(self.result.tally.items()):
            if label.startswith(_SKIPPED):
                code, reason = label[len(_SKIPPED):].split(":", 1)
                found.setdefault(code, {})[reason] = count
        return found

    def as_dict(self, *, listing: bool = True) -> dict:
        """The JSON summary; a dry run's adds `changes` (its rows) and `changes_not_listed`."""
        r = self.result
        return {
            "dry_run": r.dry_run,
            "complete": self.complete,
            "fixes": {code: {"fixed": self.fixed(code), "what": WHAT[code]} for code in self.fixes},
            "skipped": self.skipped(),
            "rows": {"scanned": r.rows_scanned, "changed": r.rows_changed, "deleted_meanwhile": r.gone},
            **r.summary_tail(listing=listing),
        }

    def json_chunks(self):
        """`as_dict()` as indented JSON, in pieces (a dry run's rows streamed)."""
        return self.result.json_chunks(self.as_dict(listing=False))

    def render(self) -> str:
        data = self.as_dict(listing=False)
        dry = self.result.dry_run
        lines = ["Dry run: would fix (nothing was written):" if dry else "Fixed:"]
        for code, info in data["fixes"].items():
            lines.append(f"  {code:<22} {info['fixed']:>7}  {info['what']}")
        for code, reasons in data["skipped"].items():
            for reason, count in reasons.items():
                lines.append(f"  skipped {code}: {count} ({reason})")
        rows = data["rows"]
        lines.append(f"rows: {rows['scanned']} scanned, {rows['changed']} {'to change' if dry else 'changed'}"
                     + (f", {rows['deleted_meanwhile']} deleted meanwhile" if rows["deleted_meanwhile"] else "")
                     + f" ({data['batches']} batches, {data['seconds']} s)")
        if self.result.changes is not None:  # a dry run: the rows it would change
            lines += self.result.changes.render()
        conflicts = data["conflicts"]
        if conflicts["retried"] or conflicts["left"]:
            lines.append(f"concurrent writes: {conflicts['retried']} compare-and-swap misses retried, {conflicts['left']} left")
        if conflicts["left"]:
            shown = ", ".join(map(str, conflicts["left_ids"][:20]))
            lines.append(f"rows still changing, left for the next run: {shown}{', …' if conflicts['left'] > 20 else ''}"
                         " — run `toolkit repair` again")
        elif dry and rows["changed"]:
            lines.append("run again with --yes instead of --dry-run to write these changes")
        elif not dry:
            lines.append("next: `toolkit audit` — a fix that needed another first (e.g. the status once a "
                         "required secret is encrypted) shows up there; run repair again for it")
        return "\n".join(lines)


def repair(database, registry, keyring, fixes, *, dry_run: bool = False,
           batch_size: int = rewrite.DEFAULT_BATCH_SIZE, max_retries: int = rewrite.DEFAULT_MAX_RETRIES,
           progress=None, after_batch=None, list_limit: int | None = rewrite.DEFAULT_LIST_LIMIT) -> RepairReport:
    """Apply the chosen fixes to every installation that has those findings (or, with
    `dry_run`, count them and list the first `list_limit` (installation, field) rows; None: all)."""
    fixes = check_fixes(fixes)
    if SECRET_PLAINTEXT in fixes or STATUS_NOT_CONFIGURED in fixes:
        keyring.current  # noqa: B018 — encrypting, and judging secrets, need ENCRYPTION_KEY
    planner = RepairPlanner(registry, keyring, fixes)
    with installations.store_factory(database, read_only=dry_run)() as store:
        if not dry_run:
            store.check_writable()
        result = rewrite.run_rewrite(store, planner, batch_size=batch_size, dry_run=dry_run,
                                      max_retries=max_retries, progress=progress, after_batch=after_batch,
                                      list_limit=list_limit)
    return RepairReport(result, fixes)
