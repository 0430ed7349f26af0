"""A Secret renders as a mask every way a value can be rendered; only reveal() shows it."""

from __future__ import annotations

import copy
import io
import json
import logging
import pickle
import sys
import traceback

import orjson
import pytest

from toolkit.crypto import Secret, json_default, mask

PLAIN = "sk_live_TOPSECRETVALUE_3f9a"
FRAGMENT = "TOPSECRET"


def renderings(secret: Secret) -> dict[str, str]:
    """Everything a careless caller could do to turn a Secret into text."""
    out = {
        "repr": repr(secret),
        "str": str(secret),
        "ascii": ascii(secret),
        "format": format(secret),
        "format-spec": format(secret, ">40"),
        "f-string": f"{secret} {secret!r} {secret!s} {secret:^30}",
        "percent": "%s %r" % (secret, secret),
        "str.format": "{} {!r}".format(secret, secret),
        "container": repr([secret, {"k": secret}, (secret,)]),
        "json-default": json.dumps({"k": secret}, default=json_default),
        "orjson-default": orjson.dumps({"k": secret}, default=json_default).decode(),
        "to_json": secret.to_json() + secret.__json__(),
        "html": secret._repr_html_(),
    }
    try:
        json.dumps(secret)
    except TypeError as exc:  # refusing is fine, as long as the message does not leak
        out["json-error"] = str(exc)
    try:
        orjson.dumps(secret)
    except TypeError as exc:
        out["orjson-error"] = str(exc)
    return out


def test_every_basic_rendering_is_masked():
    secret = Secret(PLAIN)
    for how, text in renderings(secret).items():
        assert FRAGMENT not in text and PLAIN not in text, how
    assert str(secret) == "••••••3f9a"
    assert secret.reveal() == PLAIN
    assert json.loads(json.dumps({"k": secret}, default=json_default)) == {"k": "••••••3f9a"}


def test_logging_captures_only_the_mask():
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(record)

    stream = io.StringIO()
    logger = logging.getLogger("toolkit.test.secret")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Capture())
    logger.addHandler(logging.StreamHandler(stream))
    secret = Secret(PLAIN)
    logger.info("value %s %r", secret, secret)
    logger.info(secret)
    logger.info("dict %(k)s", {"k": secret})
    logger.warning("extra", extra={"secret": secret})
    assert len(records) == 4
    for record in records:
        assert FRAGMENT not in record.getMessage()
    assert FRAGMENT not in stream.getvalue()
    assert stream.getvalue().count("••••••3f9a") == 4


def test_rich_console_pretty_and_inspect():
    from rich.console import Console
    from rich.pretty import Pretty, pretty_repr

    console = Console(record=True, width=120, file=io.StringIO())
    secret = Secret(PLAIN)
    console.print(secret)
    console.print({"apiKey": secret, "list": [secret]})
    console.print(Pretty(secret))
    console.log("logged", secret)
    from rich import inspect

    inspect(secret, console=console, private=True, dunder=True, all=True)
    text = console.export_text() + console.export_html() + pretty_repr([secret])
    assert FRAGMENT not in text
    assert "••••••3f9a" in text


def test_ipython_pretty_printer():
    from IPython.lib.pretty import pretty

    assert pretty(Secret(PLAIN)) == "Secret(••••••3f9a)"
    assert FRAGMENT not in pretty({"k": [Secret(PLAIN)]})


def _fail_with_a_secret_local():
    api_key = Secret(PLAIN)  # noqa: F841 — the point is that it sits in the frame
    raise RuntimeError("boom")


def test_tracebacks_with_locals():
    from rich.console import Console
    from rich.traceback import Traceback

    try:
        _fail_with_a_secret_local()
    except RuntimeError:
        exc_info = sys.exc_info()
    stdlib = "".join(traceback.TracebackException(*exc_info, capture_locals=True).format())
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(Traceback.from_exception(*exc_info, show_locals=True))
    rich_text = console.export_text()
    assert "api_key" in stdlib and "api_key" in rich_text  # the local is shown…
    assert FRAGMENT not in stdlib and FRAGMENT not in rich_text  # …masked
    assert "••••••3f9a" in stdlib and "••••••3f9a" in rich_text


def test_pickle_refused_copy_shares():
    secret = Secret(PLAIN)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        pickle.dumps({"nested": [secret]})
    assert copy.copy(secret) is secret and copy.deepcopy({"k": secret})["k"] is secret


def test_not_reachable_through_attributes():
    secret = Secret(PLAIN)
    with pytest.raises(TypeError):
        vars(secret)
    for name in dir(secret):
        value = getattr(secret, name)
        if not callable(value):
            assert FRAGMENT not in repr(value), name


def test_equality_and_hash():
    a, b, c = Secret(PLAIN), Secret(PLAIN), Secret(PLAIN + "x")
    assert a == b and hash(a) == hash(b) and a != c
    assert a != PLAIN and PLAIN != a  # never equal to its plaintext as a str
    assert len({a, b, c}) == 2


@pytest.mark.parametrize(
    "plain, visible, expected",
    [
        ("abcdefghijkl", 4, "••••••ijkl"),
        ("abcdefghijk", 4, "••••••"),  # too short to show a third
        ("abcdefghijkl", 0, "••••••"),
        ("abcdef", 2, "••••••ef"),
        ("", 4, "••••••"),
        ("x", 1, "••••••"),
    ],
)
def test_mask(plain, visible, expected):
    assert mask(plain, visible) == expected == str(Secret(plain, visible))


def test_from_bytes_flags_invalid_utf8():
    good, bad = Secret.from_bytes("ok ✓".encode()), Secret.from_bytes(b"ok\xff")
    assert good.reveal() == "ok ✓" and not good.invalid_utf8
    assert bad.reveal() == "ok\ufffd" and bad.invalid_utf8
    with pytest.raises(TypeError):
        Secret(b"bytes")


def test_rows_and_changes_of_a_write_show_no_config_value_in_their_repr():
    """What a rewrite reads and writes (old and new plaintexts, in dry runs and repairs) never
    shows in a repr: a traceback with locals, a debugger or print(plan) keeps them hidden."""
    import datetime as dt

    from toolkit.db.installations import Change, Row
    from toolkit.writes.configs import _Row

    config = {"apiKey": "hunter2-old-secret"}
    shown = " ".join(repr(item) for item in (
        Row(7, "stripe", "configured", config, '{"apiKey": "hunter2-old-secret"}', "123"),
        Change(7, expect=config, patch={"apiKey": "hunter2-new-secret"}, drop=("x",), status=("installed", "configured")),
        _Row(7, 3, "stripe", "configured", config, '{"apiKey": "hunter2-old-secret"}', dt.datetime(2026, 1, 1), None),
    ))
    assert "hunter2" not in shown
    assert "id=7" in shown and "apiKey" in shown and "stripe" in shown  # still says which row and keys
