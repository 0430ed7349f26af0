"""`toolkit decrypt` and `toolkit encrypt`: one value, exactly as the app stores it.

Only the result goes to stdout. A value that is malformed, tampered with or under an
unknown key ends the command with `error: …` naming which, exit 2, and nothing on stdout.
VALUE is read from stdin when omitted, so secrets stay out of shell history.

Byte-exact both ways: from stdin exactly one trailing newline is dropped (what `echo` and a
here-string add) and nothing else; `decrypt` into a pipe or a file writes the plaintext's
bytes and nothing more, so `toolkit encrypt | toolkit decrypt` gives back what went in. Only
on a terminal — a person reading — does `decrypt` escape control characters
(`safe_text.escape_text`) and end the line.
"""

from __future__ import annotations

import sys

import click

from ..errors import UsageError
from ..safe_text import escape_text, is_safe
from ._context import get_context
from ._output import write_stdout

MAX_INPUT = 1 << 20  # bytes read from stdin: far above any config value, and `< /dev/zero` ends


def read_value(value: str | None, what: str) -> str:
    """VALUE from the argument as given, else from stdin minus one trailing newline.

    Empty input is an error (exit 2): `encrypt` must not turn a forgotten pipe into a
    stored encryption of "", nor `decrypt` report a malformed value nobody typed."""
    if value is not None:
        return value
    text = _prompt(what) if sys.stdin is None or sys.stdin.isatty() else _read_stdin(what)
    if not text:
        raise UsageError(f"the input was empty: no {what.lower()} on standard input",
                         hint="pipe the value in, e.g. printf %s \"$VALUE\" | toolkit …")
    return text


def _prompt(what: str) -> str:
    import getpass

    click.echo(f"{what} (input hidden): ", err=True, nl=False)
    return getpass.getpass(prompt="")


def _read_stdin(what: str) -> str:
    data = sys.stdin.buffer.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise UsageError(f"the {what.lower()} on standard input is longer than {MAX_INPUT:,} bytes")
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"the {what.lower()} on standard input is not UTF-8 text") from None


@click.command()
@click.argument("value", required=False)
def decrypt(value):
    """Decrypt one stored `iv:authTag:ciphertext` value and print the plaintext.

    Tries the current key, then ENCRYPTION_KEY_PREVIOUS; stderr says which key fitted.
    Every decrypt is recorded in the access log (time, OS user, key fingerprint — never
    the value). Into a pipe or file the plaintext's exact bytes are written, with no
    newline added; on a terminal control characters are shown escaped.

    \b
    Examples:
      toolkit decrypt < value.txt
      psql -Atc "select config->>'apiKey' from app_installations where id=42" | toolkit decrypt
    """
    from ..crypto.access_log import record_reveal

    context = get_context()
    stored = read_value(value, "Ciphertext")  # exactly as given, but one trailing newline
    decrypted = context.value_keyring.decrypt(stored)
    record_reveal(context.settings, installation_id=None, field=None,
                  key_fingerprint=decrypted.key.fingerprint, via="cli", ciphertext=stored)
    if decrypted.key_index:
        click.echo(f"decrypted with the {decrypted.key} key — rotate it with `toolkit keys rotate`", err=True)
    if decrypted.secret.invalid_utf8:
        click.echo("warning: the plaintext is not valid UTF-8; invalid bytes are shown as U+FFFD", err=True)
    plaintext = decrypted.secret.reveal()
    if not sys.stdout.isatty():
        write_stdout(plaintext)
        return
    if not is_safe(plaintext):
        click.echo("note: the plaintext holds control characters, shown escaped; "
                   "redirect stdout (> file, | command) for the exact bytes", err=True)
    write_stdout(escape_text(plaintext), newline=True)


@click.command()
@click.argument("value", required=False)
def encrypt(value):
    """Encrypt one value with the current key as the app does and print `iv:authTag:ciphertext`.

    A fresh random IV every time (TOOLKIT_IV_LENGTH bytes, 16 by default). Refuses a value
    that is already a ciphertext, and empty input. From stdin exactly one trailing newline
    is dropped. Prefer stdin: a VALUE argument shows in the process list and shell history.

    \b
    Examples:
      toolkit encrypt            (prompts, input hidden)
      printf %s "$NEW_SECRET" | toolkit encrypt
    """
    if value is not None:
        click.echo("warning: a VALUE on the command line shows in the process list and your shell history; "
                   "pipe it on stdin instead: printf %s \"$SECRET\" | toolkit encrypt", err=True)
    context = get_context()
    write_stdout(context.value_keyring.encrypt(read_value(value, "Plaintext")), newline=True)
