"""Pure parts of the dashboard: the filter language, config rows (masking), cells (no markup)."""

from __future__ import annotations

import pytest
from rich.text import Text
from test_browse_seed import MALFORMED, MARKUP_VALUE, REGISTRY, SECRET_STRIPE, keyring

from toolkit import inspection
from toolkit.crypto import Keyring
from toolkit.errors import UsageError
from toolkit.registry import parse_registry
from toolkit.tui import cells
from toolkit.tui.config_view import row_cells, state_words
from toolkit.tui.filters import FilterQuery, parse_filter, resolve_app

STRIPE = parse_registry(REGISTRY).get("stripe")


def test_filter_words_keys_and_quotes():
    query = parse_filter('app:Stripe status:CONFIGURED code:secret.plaintext "alice smith" bob')
    assert query == FilterQuery(app="Stripe", status="configured", code="secret.plaintext", email="alice smith bob")
    assert parse_filter(query.text()) == query
    assert parse_filter("user=42").user_id == 42
    assert parse_filter("").is_empty


@pytest.mark.parametrize("text", ["status:broken", "user:x", "app:", "'unclosed", "role:admin"])
def test_filter_errors_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_filter(text, allowed=("app", "status", "email", "code", "user"))


def test_users_filter_allows_role_only_where_asked():
    assert parse_filter("role:Admin x", allowed=("email", "role")) == FilterQuery(role="admin", email="x")
    with pytest.raises(UsageError):
        parse_filter("app:stripe", allowed=("email", "role"))


def test_resolve_app_by_id_or_name():
    apps = {"stripe": "Stripe", "gh": "GitHub"}
    assert resolve_app("github", apps) == "gh"
    assert resolve_app("stripe", apps) == "stripe"
    assert resolve_app("legacy-app", apps) == "legacy-app"


def rows_of(config, app, ring):
    fields, problem = inspection.config_fields(config, app, ring)
    assert problem is None
    return {f.key: f for f in fields}


def test_config_rows_mask_every_secret_state():
    ring = keyring()
    other = Keyring.from_materials([b"\x33" * 32])
    config = {"apiKey": ring.encrypt(SECRET_STRIPE), "region": MARKUP_VALUE, "extra": other.encrypt("x"),
              "n": 5, "mirror": ring.encrypt("copied-secret")}
    rows = rows_of(config, STRIPE, ring)
    assert list(rows) == ["apiKey", "region", "webhookUrl", "extra", "n", "mirror"]  # registry order first
    api = row_cells(rows["apiKey"])
    assert rows["apiKey"].masked and SECRET_STRIPE not in api[3].plain
    assert state_words(rows["apiKey"]) == "encrypted · current key" and rows["apiKey"].revealable
    assert row_cells(rows["region"])[3].plain == MARKUP_VALUE  # literal, not markup
    assert row_cells(rows["region"])[3].spans == []
    absent = rows["webhookUrl"]
    assert (absent.state, absent.value, absent.display) == (inspection.ABSENT, None, "(not set)")
    assert row_cells(absent)[3].plain == "(not set)"
    # Ciphertext-shaped in a field the registry does not call a password: masked all the same.
    assert rows["extra"].type == "unknown" and rows["extra"].masked and not rows["extra"].revealable
    assert rows["mirror"].state == inspection.CIPHERTEXT and rows["mirror"].revealable
    assert "copied-secret" not in row_cells(rows["mirror"])[3].plain + rows["mirror"].display
    assert state_words(rows["mirror"]) == "a ciphertext in a non-secret field"
    assert row_cells(rows["n"])[3].plain == "5" and not rows["n"].masked
    words = [state_words(rows_of({"apiKey": v}, STRIPE, ring)["apiKey"])
             for v in ("plain-secret", MALFORMED, other.encrypt("y"), "", None)]
    assert words == ["stored as PLAINTEXT", "malformed ciphertext",
                     "cannot decrypt: wrong key or tampered", "empty", "null, not a string"]
    plain = rows_of({"apiKey": "plain-secret"}, STRIPE, ring)["apiKey"]
    assert "plain-secret" not in row_cells(plain)[3].plain


def test_previous_key_and_no_keyring_states():
    ring = keyring()
    previous_only = Keyring.from_materials([ring.keys[1].material])
    value = previous_only.encrypt("old")
    assert state_words(rows_of({"apiKey": value}, STRIPE, ring)["apiKey"]) == "encrypted · previous key #1 (stale)"
    no_key = rows_of({"apiKey": value, "region": ring.encrypt("eu")}, STRIPE, None)
    assert state_words(no_key["apiKey"]) == "encrypted (no key configured)"
    assert no_key["region"].masked and not no_key["region"].revealable
    assert state_words(rows_of({"apiKey": MALFORMED}, STRIPE, None)["apiKey"]) == "malformed ciphertext"


def test_non_object_configs_are_described_without_content():
    fields, problem = inspection.config_fields(["a", "b"], STRIPE, keyring())
    assert fields == () and problem == "config is not a JSON object but an array of 2 items"
    text = inspection.describe_non_object("sk_live_plaintext")
    assert "sk_live" not in text and "a string of 17 characters" in text


def test_cells_are_text_never_markup():
    cell = cells.text("[bold]x[/]\nline")
    assert isinstance(cell, Text) and cell.plain == "[bold]x[/]\\nline" and not cell.spans  # one line, escaped
    assert cells.text(None).plain == "—"
    assert cells.text({"a": 1}).plain == '{"a": 1}'


def test_filter_takes_ids_and_comma_lists():
    from toolkit.tui.filters import resolve_apps

    query = parse_filter("id:12,13 app:stripe,GitHub status:installed,configured")
    assert query.ids == (12, 13) and query.app == "stripe,GitHub"
    assert parse_filter(query.text()) == query
    assert resolve_apps(query.app, {"stripe": "Stripe", "gh": "GitHub"}) == ("stripe", "gh")
    for wrong in ("id:x", "status:installed,broken"):
        with pytest.raises(UsageError):
            parse_filter(wrong)


@pytest.mark.parametrize("typed, completed", [
    ("st", "status:"),
    ("app:str", "app:stripe"),
    ("app:stripe,SL", "app:stripe,SLack"),
    ("alice code:secret.pl", "alice code:secret.plaintext"),
    ("status:conf", "status:configured"),
    ("app:stripe", None),  # already whole
    ("zzz", None),
    ("app:nothing", None),
    ("", None),
])
def test_completion_finishes_the_last_word(typed, completed):
    from toolkit.tui.filters import complete

    values = {"app": ["stripe", "slack", "Stripe"], "code": ["secret.plaintext", "secret.malformed"],
              "status": ["installed", "configured"]}
    assert complete(typed, values) == completed


def test_the_raw_config_is_json_of_what_is_stored_with_secrets_masked_and_nothing_a_terminal_obeys():
    import dataclasses
    import json

    from toolkit.crypto import mask
    from toolkit.safe_text import UNSAFE_RANGES
    from toolkit.tui.config_view import raw_config

    ring = keyring()
    hostile = "\x1b]52;c;ZWNobw==\x07\u202e\x9b31m"
    config = {"apiKey": ring.encrypt(SECRET_STRIPE), "region": "eu", f"note{hostile}": f"v{hostile}",
              "retries": [1, {"n": None}], "stray": ring.encrypt("other-secret"), "webhookUrl": ""}
    fields, problem = inspection.config_fields(config, STRIPE, ring)
    view = inspection.InstallationView(id=1, user_id=1, user_email="a@x", user_name=None, app_id="stripe",
                                       app_name="Stripe", app_known=True, status="installed", installed_at=None,
                                       updated_at=None, fields=fields, config_problem=problem)
    text = raw_config(view)
    assert json.loads(text) == {"apiKey": mask(SECRET_STRIPE, 4), "region": "eu", f"note{hostile}": f"v{hostile}",
                                "retries": [1, {"n": None}], "stray": mask("other-secret", 4), "webhookUrl": ""}
    assert SECRET_STRIPE not in text and "other-secret" not in text
    assert not any(low <= ord(c) <= high for c in text.replace("\n", "") for low, high in UNSAFE_RANGES)
    not_object = dataclasses.replace(view, fields=(), config_problem="config is not a JSON object but an array of 3 items")
    assert raw_config(not_object) == "// config is not a JSON object but an array of 3 items"
