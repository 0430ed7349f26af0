"""`toolkit keys`: generate a key, count stored secrets per key (status), rotate (in
`_rotate.py`). Subcommands are imported only when run."""

from __future__ import annotations

import click

from ..safe_text import escape_text
from ._context import get_context
from ._lazy import LazyGroup
from ._output import write_stdout
from ._terminal import TextOutput, no_pager_option

# name -> ("module:attribute" in this package, one-line help).
SUBCOMMANDS = {
    "generate": ("_keys:generate", "Print a new random key (64 hex characters)."),
    "status": ("_keys:status", "Count stored secrets per key; say which old keys can be retired."),
    "rotate": ("_rotate:rotate", "Re-encrypt every secret under the current key."),
}


@click.group(cls=LazyGroup, lazy_commands=SUBCOMMANDS)
def keys():
    """Encryption keys: generate, status (values per key), rotate.

    The keyring is ENCRYPTION_KEY (current) plus ENCRYPTION_KEY_PREVIOUS (comma-separated,
    tried for decryption). Keys are named by label and fingerprint, never shown.
    """


@click.command()
def generate():
    """Print a new random 32-byte key as 64 hex characters (for ENCRYPTION_KEY).

    \b
    Example:
      toolkit keys generate > new.key     # keep it out of shell history and logs
    """
    import secrets

    write_stdout(secrets.token_hex(32), newline=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@no_pager_option
def status(as_json, no_pager):
    """Count the stored secrets each key authenticates, and those none does.

    Streams every installation in read-only keyset pages and counts every ciphertext, in
    any field of any app (known to the registry or not), under the key that opens it;
    password fields also count plaintext and malformed values. A previous key that
    authenticates 0 values can be removed from ENCRYPTION_KEY_PREVIOUS; until then the
    command lists where its values are.

    \b
    Examples:
      ENCRYPTION_KEY_PREVIOUS=<old> toolkit keys status
      toolkit keys status --json | jq '.keys'
    """
    from ..keys.usage import key_usage

    context = get_context()
    keyring = context.keyring
    keyring.current  # noqa: B018 — no key, nothing to count against: say so first
    usage = key_usage(context.database, context.registry, keyring)
    if as_json:
        import orjson

        write_stdout(orjson.dumps(usage.as_dict(), option=orjson.OPT_INDENT_2), newline=True)
        return
    with TextOutput(no_pager=no_pager) as out:
        for line, severity in status_lines(usage):
            out.line(line, severity)


def render_status(usage) -> str:
    return "\n".join(line for line, _ in status_lines(usage))


def status_lines(usage) -> list[tuple[str, str | None]]:
    """The table and what to do, as (line, severity or None): a previous key still in use is
    a warning, values no key opens an error, a key that can go is news (info)."""
    rows = [(key.label, key.fingerprint, count) for key, count in zip(usage.keyring.keys, usage.per_key)]
    rows += [
        ("no key (undecryptable)", "", usage.undecryptable),
        ("plaintext", "", usage.plaintext),
        ("malformed", "", usage.malformed),
    ]
    width = max(len(label) for label, _, _ in rows)
    lines = [f"{'key':<{width}}  {'fingerprint':<11}  {'values':>8}"]
    lines += [f"{label:<{width}}  {fp:<11}  {count:>8}" for label, fp, count in rows]
    lines.append(f"{'total':<{width}}  {'':<11}  {usage.values:>8}")
    notes = [f"{plural(usage.installations, 'installation')} scanned, {plural(usage.empty, 'empty secret field')}"]
    if usage.unknown_app:
        notes.append(f"{plural(usage.unknown_app, 'installation')} of apps not in the registry (their ciphertexts counted)")
    lines += ["", "; ".join(notes) + "."]
    lines = [(line, None) for line in lines]
    for key, count, outside, places in zip(usage.keyring.previous, usage.per_key[1:],
                                           usage.outside_password_fields[1:], usage.locations[1:]):
        if count:
            elsewhere = f" ({outside} outside the registry's password fields)" if outside else ""
            lines.append((f"{key.label} ({key.fingerprint}) still authenticates {plural(count, 'value')}{elsewhere}: "
                          "run `toolkit keys rotate` before retiring it. Where:", "warning"))
            lines += [(f"  {escape_text(str(where))}", None) for where in places]  # app ids, field names: customer text
            if count > len(places):
                lines.append((f"  … and {count - len(places)} more (`toolkit audit --code secret.stale-key` lists all)", None))
        else:
            lines.append((f"{key.label} ({key.fingerprint}) authenticates no value: "
                          "it can be removed from ENCRYPTION_KEY_PREVIOUS.", "info"))
    if usage.undecryptable:
        verb = "decrypts" if usage.undecryptable == 1 else "decrypt"
        lines.append((f"{plural(usage.undecryptable, 'value')} {verb} under no key: "
                      "find them with `toolkit audit` (secret.undecryptable).", "error"))
    return lines


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
