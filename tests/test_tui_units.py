"""Pure parts of the dashboard: the filter language, config rows (masking), cells (no markup)."""

from __future__ import annotations

import pytest
from rich.text import Text
from test_browse_seed import MALFORMED, MARKUP_VALUE, REGISTRY, SECRET_STRIPE, keyring

from toolkit.crypto import Keyring
from toolkit.errors import UsageError
from toolkit.registry import parse_registry
from toolkit.tui import cells
from toolkit.tui.config_view import config_rows, describe_non_object
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


def test_config_rows_mask_every_secret_state():
    ring = keyring()
    other = Keyring.from_materials([b"\x33" * 32])
    config = {"apiKey": ring.encrypt(SECRET_STRIPE), "region": MARKUP_VALUE, "extra": other.encrypt("x"), "n": 5}
    rows = {r.key: r for r in config_rows(config, STRIPE, ring)}
    assert rows["apiKey"].is_secret and SECRET_STRIPE not in rows["apiKey"].value.plain
    assert rows["apiKey"].state == "encrypted · current key" and rows["apiKey"].revealable
    assert rows["region"].value.plain == MARKUP_VALUE  # literal, not markup
    assert rows["webhookUrl"].value.plain == "(not set)" and not rows["webhookUrl"].present
    assert rows["extra"].type == "unknown" and rows["extra"].is_secret  # ciphertext-shaped: masked
    assert rows["n"].state == "not a string"
    states = {v: config_rows({"apiKey": v}, STRIPE, ring)[0].state
              for v in ("plain-secret", MALFORMED, other.encrypt("y"), "")}
    assert list(states.values()) == ["stored as PLAINTEXT", "malformed ciphertext",
                                     "cannot decrypt: wrong key or tampered", "empty"]
    assert "plain-secret" not in config_rows({"apiKey": "plain-secret"}, STRIPE, ring)[0].value.plain


def test_previous_key_and_no_keyring_states():
    ring = keyring()
    previous_only = Keyring.from_materials([ring.keys[1].material])
    value = previous_only.encrypt("old")
    assert config_rows({"apiKey": value}, STRIPE, ring)[0].state == "encrypted · previous key #1 (stale)"
    assert config_rows({"apiKey": value}, STRIPE, None)[0].state == "encrypted (no key configured)"
    assert config_rows({"apiKey": MALFORMED}, STRIPE, None)[0].state == "malformed ciphertext"


def test_non_object_configs_are_described_without_content():
    assert describe_non_object(["a", "b"]).startswith("config is an array of 2 items")
    text = describe_non_object("sk_live_plaintext")
    assert "sk_live" not in text and "a string of 17 characters" in text


def test_cells_are_text_never_markup():
    cell = cells.text("[bold]x[/]\nline")
    assert isinstance(cell, Text) and cell.plain == "[bold]x[/]⏎line" and not cell.spans
    assert cells.text(None).plain == "—"
    assert cells.text({"a": 1}).plain == '{"a": 1}'
