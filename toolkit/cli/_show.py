"""`toolkit show ID`: one installation for a person (text, every stored string escaped) or a
script (`--json`, byte for byte)."""

from __future__ import annotations

import click

from ..safe_text import escape_text
from ._context import get_context
from ._output import write_stdout
from ._terminal import TextOutput, no_pager_option
from ._types import ID


@click.command()
@click.argument("installation_id", type=ID)
@click.option("--reveal", allow_from_autoenv=False, is_flag=True, help="Decrypt and print the secret fields (each reveal is written to the access log).")
@click.option("--field", "fields", multiple=True, metavar="KEY", help="With --reveal: only these fields (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@no_pager_option
def show(installation_id, reveal, fields, as_json, no_pager):
    """Show one installation: user, app, status, timestamps and config.

    Password fields are masked (e.g. ••••••3f9a). --reveal decrypts them; every revealed
    field is recorded in the access log (time, OS user, installation, field, key
    fingerprint — never the value).

    \b
    Examples:
      toolkit show 42
      toolkit show 42 --reveal --field apiKey
      toolkit show 42 --json | jq .config
    """
    from .. import inspection

    context = get_context()
    # Without ENCRYPTION_KEY the installation still shows, its secrets as <no-key>.
    keyring = context.keyring if (context.is_demo or context.settings.encryption_key) else None
    view = inspection.load_installation(context.database, context.registry, keyring, installation_id)
    revealed = {}
    if reveal:
        # Without --field: every secret that can be shown (a malformed one is named, not fatal).
        wanted = set(fields) or {f.key for f in view.fields if f.is_secret and f.value is not None}
        for key in sorted(wanted):
            revealed[key] = inspection.reveal(view, key, context.settings, via="cli")
    if as_json:
        import orjson

        data = view.as_dict()
        for key, plaintext in revealed.items():
            data["config"][key]["value"] = plaintext
            data["config"][key]["revealed"] = True
        write_stdout(orjson.dumps(data, option=orjson.OPT_INDENT_2), newline=True)
        return
    with TextOutput(no_pager=no_pager) as out:
        for line, severity in render_lines(view, revealed):
            out.line(line, severity)


def _state_severity(state: str) -> str | None:
    """A field's state coloured as the audit finding it is (one owner: the codes table)."""
    from .. import codes, inspection

    code = {inspection.PLAINTEXT_SECRET: codes.SECRET_PLAINTEXT, inspection.MALFORMED: codes.SECRET_MALFORMED,
            inspection.UNDECRYPTABLE: codes.SECRET_UNDECRYPTABLE, inspection.STALE: codes.SECRET_STALE_KEY,
            inspection.NON_STRING: codes.CONFIG_NON_STRING,
            inspection.CIPHERTEXT: codes.FIELD_UNEXPECTED_CIPHERTEXT}.get(state)
    return codes.CODES[code].severity if code else None


def render_lines(view, revealed):
    """The installation for a terminal, as (line, severity or None) pairs. Emails, names, app
    ids, config keys, values — even a revealed plaintext — are customer text: each goes through `escape_text`, so none can
    write the clipboard, retitle the window or clear the screen."""
    e = escape_text

    def when(value):
        return value.isoformat(sep=" ", timespec="seconds") if value else "-"

    name = f" ({e(view.user_name)})" if view.user_name else ""
    app = e(view.app_name) if view.app_known else f"{e(view.app_id)} (not in the registry)"
    lines = [
        f"installation {view.id}",
        f"  user        {view.user_id} {e(view.user_email)}{name}",
        f"  app         {app} [{e(view.app_id)}]",
        f"  status      {e(view.status)}",
        f"  installed   {when(view.installed_at)}",
        f"  updated     {when(view.updated_at)}",
        "  config",
    ]
    if view.config_problem:
        lines.append((f"    ! {e(view.config_problem)}", "error"))
    labels = {field.key: e(field.label) for field in view.fields}
    width = max(map(len, labels.values()), default=0)
    for field in view.fields:
        value = e(revealed.get(field.key, field.display))
        notes = [e(field.type)]
        if field.key_label:
            notes.append(f"key {field.key_label} {field.key_fingerprint}")
        if field.state not in ("plain", "encrypted"):
            notes.append(field.state)
        if field.note:
            notes.append(e(field.note))
        if field.key in revealed:
            notes.append("revealed")
        lines.append((f"    {labels[field.key]:<{width}}  {value}  ({', '.join(notes)})", _state_severity(field.state)))
    if not view.fields and not view.config_problem:
        lines.append("    (empty)")
    return [line if isinstance(line, tuple) else (line, None) for line in lines]
