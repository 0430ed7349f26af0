"""`toolkit decrypt` and `toolkit encrypt`: one value, exactly as the app stores it.

Only the result goes to stdout. A value that is malformed, tampered with or under an
unknown key ends the command with `error: …` naming which, exit 2, and nothing on stdout.
VALUE is read from stdin when omitted, so secrets stay out of shell history.
"""

from __future__ import annotations

import click

from ._context import get_context, read_value


@click.command()
@click.argument("value", required=False)
def decrypt(value):
    """Decrypt one stored `iv:authTag:ciphertext` value and print the plaintext.

    Tries the current key, then ENCRYPTION_KEY_PREVIOUS; stderr says which key fitted.
    Every decrypt is recorded in the access log (time, OS user, key fingerprint — never
    the value).

    \b
    Examples:
      toolkit decrypt < value.txt
      psql -Atc "select config->>'apiKey' from app_installations where id=42" | toolkit decrypt
    """
    from ..crypto.access_log import record_reveal

    context = get_context()
    # A pasted ciphertext often carries a newline or spaces; they are never part of one.
    stored = read_value(value, "Ciphertext").strip()
    decrypted = context.value_keyring.decrypt(stored)
    record_reveal(context.settings, installation_id=None, field=None,
                  key_fingerprint=decrypted.key.fingerprint, via="cli", ciphertext=stored)
    if decrypted.key_index:
        click.echo(f"decrypted with the {decrypted.key} key — rotate it with `toolkit keys rotate`", err=True)
    if decrypted.secret.invalid_utf8:
        click.echo("warning: the plaintext is not valid UTF-8; invalid bytes are shown as U+FFFD", err=True)
    click.echo(decrypted.secret.reveal())


@click.command()
@click.argument("value", required=False)
def encrypt(value):
    """Encrypt one value with the current key as the app does and print `iv:authTag:ciphertext`.

    A fresh random IV every time (TOOLKIT_IV_LENGTH bytes, 16 by default). Refuses a value
    that is already a ciphertext. From stdin, one trailing newline is dropped.

    \b
    Examples:
      toolkit encrypt            (prompts, input hidden)
      printf %s "$NEW_SECRET" | toolkit encrypt
    """
    context = get_context()
    click.echo(context.value_keyring.encrypt(read_value(value, "Plaintext")))
