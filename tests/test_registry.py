"""Registry loading (valid file, every structural error, extra properties, unknown types),
the per-app config checks (`validate` and the marshmallow schema) and `toolkit registry check`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from marshmallow import Schema

import toolkit.registry as registry_pkg
from toolkit.cli import main
from toolkit.errors import ExitCode, RegistryError
from toolkit.registry import (
    AppDefinition,
    FieldDefinition,
    Problem,
    RegistryStructureError,
    SelectOption,
    load_registry,
    parse_registry,
    schema_problems,
)

FIXTURES = Path(__file__).parent / "fixtures" / "registries"


@pytest.fixture(scope="module")
def registry():
    return load_registry(FIXTURES / "valid.json")


def write(tmp_path, data, name="registry.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def structural_error(tmp_path, data) -> RegistryStructureError:
    path = write(tmp_path, data)
    with pytest.raises(RegistryStructureError) as info:
        load_registry(path)
    assert str(path) in info.value.message  # every structural error names the file
    return info.value


def one_field_app(**field):
    return {"app": {"name": "App", "fields": [{"key": "f", "label": "F", "type": "text", **field}]}}


def test_public_api_is_explicit():
    assert sorted(registry_pkg.__all__) == sorted(
        name for name in dir(registry_pkg) if not name.startswith("_") and name not in {
            "annotations",
        } and not isinstance(getattr(registry_pkg, name), type(registry_pkg))
    )


# --- a valid file ---

def test_valid_file_loads_apps_and_fields(registry):
    assert list(registry.apps) == ["stripe", "slack", "mailer"]
    stripe = registry.apps["stripe"]
    assert (stripe.id, stripe.name, stripe.category) == ("stripe", "Stripe", "payments")
    assert [f.key for f in stripe.fields] == ["apiKey", "region", "webhookUrl"]
    assert stripe.secret_keys == ("apiKey",)
    assert stripe.required_keys == ("apiKey", "region")
    api_key = stripe.field("apiKey")
    assert (api_key.type, api_key.required, api_key.is_secret, api_key.label) == ("password", True, True, "Secret key")
    assert stripe.field("webhookUrl").required is False  # required defaults to false
    assert stripe.field("nope") is None
    assert registry.get("nope") is None and "slack" in registry and len(registry) == 3


def test_select_options_given_both_ways(registry):
    assert registry.apps["stripe"].field("region").options == (SelectOption("us", "us"), SelectOption("eu", "eu"))
    assert registry.apps["slack"].field("mode").options == (
        SelectOption("bot", "Bot user"), SelectOption("webhook", "webhook"),  # label defaults to value
    )


def test_extra_properties_are_ignored(registry):
    # icon, component (app) and placeholder (field) are in the file and change nothing.
    stripe = registry.apps["stripe"]
    assert not hasattr(stripe, "icon")
    assert stripe.field("apiKey") == FieldDefinition(key="apiKey", label="Secret key", type="password", required=True)


def test_unknown_type_is_a_warning_and_validated_as_text(registry):
    logo = registry.apps["mailer"].field("logo")
    assert (logo.type, logo.declared_type) == ("text", "image")
    assert registry.warnings == ("app 'mailer', field 'logo': unknown type 'image', validated as text",)
    assert registry.apps["mailer"].validate({"from": "a@example.com", "logo": "anything at all"}) == []


def test_summary(registry):
    summary = registry.summary()
    assert summary["apps"] == 3 and summary["fields"] == 10
    assert summary["secret_fields"] == 2 and summary["required_fields"] == 5
    assert summary["fields_by_type"]["password"] == 2


def test_missing_label_name_and_category_default_sensibly(tmp_path):
    loaded = load_registry(write(tmp_path, {"crm": {"fields": [{"key": "token", "type": "password"}]}}))
    app = loaded.apps["crm"]
    assert (app.name, app.category, app.field("token").label) == ("crm", None, "token")


def test_empty_registry_is_valid_with_a_warning(tmp_path):
    loaded = load_registry(write(tmp_path, {}))
    assert len(loaded) == 0 and loaded.warnings == ("the registry defines no apps",)


# --- file-level errors: one line with the path ---

def test_missing_file(tmp_path):
    with pytest.raises(RegistryError) as info:
        load_registry(tmp_path / "nope.json")
    assert info.value.message == f"registry file not found: {tmp_path / 'nope.json'}"
    assert "TOOLKIT_REGISTRY" in info.value.hint


def test_invalid_json_names_line_and_column():
    path = FIXTURES / "bad-json.json"
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert info.value.message == f"{path}: invalid JSON at line 4, column 44: Expecting property name enclosed in double quotes"
    assert "\n" not in info.value.one_line()


def test_registry_not_an_object(tmp_path):
    error = structural_error(tmp_path, [{"id": "stripe"}])
    assert error.message.endswith("the registry must be a JSON object keyed by app id, not an array")


# --- structural errors: each names the app and the field ---

@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"stripe": "Stripe"}, "app 'stripe': must be an object"),
        ({"stripe": {"name": "Stripe"}}, "app 'stripe': \"fields\" is required"),
        ({"stripe": {"fields": {"key": "a"}}}, "app 'stripe': \"fields\" must be a list"),
        ({"stripe": {"name": 3, "fields": []}}, "app 'stripe': \"name\" must be a string"),
        ({"stripe": {"fields": ["apiKey"]}}, "app 'stripe', field #1: must be an object"),
        ({"stripe": {"fields": [{"type": "text"}]}}, "app 'stripe', field #1: \"key\" is required"),
        ({"stripe": {"fields": [{"key": " ", "type": "text"}]}}, "app 'stripe', field #1: \"key\" must not be empty"),
        ({"stripe": {"fields": [{"key": 7, "type": "text"}]}}, "app 'stripe', field #1: \"key\" must be a string"),
        (one_field_app(type=None), "app 'app', field 'f': \"type\" must not be null"),
        ({"app": {"fields": [{"key": "f"}]}}, "app 'app', field 'f': \"type\" is required"),
        (one_field_app(required="yes"), "app 'app', field 'f': \"required\" must be true or false"),
        (one_field_app(required=1), "app 'app', field 'f': \"required\" must be true or false"),
        (one_field_app(type="select"), "app 'app', field 'f': a select field needs a non-empty \"options\" list"),
        (one_field_app(type="select", options=[]), "app 'app', field 'f': a select field needs a non-empty \"options\" list"),
        (one_field_app(type="select", options="us,eu"), "app 'app', field 'f': \"options\" must be a list"),
        (one_field_app(type="select", options=["us", {"label": "EU"}]),
         "app 'app', field 'f': \"options\" #2: an option object needs a string \"value\""),
        (one_field_app(type="select", options=["us", 3]),
         "app 'app', field 'f': \"options\" #2: an option must be a string or an object {\"value\", \"label\"}"),
        (one_field_app(type="select", options=["us", {"value": "us", "label": "US"}]),
         "app 'app', field 'f': duplicate option value 'us'"),
        (one_field_app(pattern="(unclosed"),
         "app 'app', field 'f': \"pattern\" is not a valid regular expression (missing ), unterminated subpattern at position 0)"),
        (one_field_app(pattern="[z-a]"), "app 'app', field 'f': \"pattern\" is not a valid regular expression"),
        ({"app": {"fields": [{"key": "a", "type": "text"}, {"key": "b", "type": "url"}, {"key": "a", "type": "email"}]}},
         "app 'app', field 'a': duplicate key (fields #1 and #3)"),
        ({"": {"fields": []}}, "app '': an app id must not be empty"),
        ({"x" * 101: {"fields": []}}, "is longer than 100 characters"),
    ],
)
def test_each_structural_error_has_its_message(tmp_path, data, expected):
    error = structural_error(tmp_path, data)
    assert expected in error.message
    assert error.exit_code == ExitCode.USAGE
    assert "\n" not in error.one_line()


def test_every_problem_is_listed_and_the_line_counts_the_rest():
    path = FIXTURES / "invalid-many.json"
    with pytest.raises(RegistryStructureError) as info:
        load_registry(path)
    assert info.value.problems == [
        "app 'broken', field 'region': a select field needs a non-empty \"options\" list",
        "app 'broken', field 'hook': \"pattern\" is not a valid regular expression (missing ), unterminated subpattern at position 0)",
    ]
    assert info.value.message == f"{path}: {info.value.problems[0]} (and 1 more)"


def test_options_on_a_non_select_field_are_ignored(tmp_path):
    loaded = load_registry(write(tmp_path, one_field_app(type="text", options=["a"])))
    assert loaded.apps["app"].validate({"f": "anything"}) == []


# --- validate(): the stored-config check ---

def test_validate_good_config(registry):
    stripe = registry.apps["stripe"]
    assert stripe.validate({"apiKey": "aa:bb:cc", "region": "eu", "webhookUrl": "https://x.example"}, status="configured") == []


def test_validate_codes(registry):
    stripe = registry.apps["stripe"]
    config = {"apiKey": 42, "region": "mx", "webhookUrl": "http://x.example", "extra": "1", "weird": None}
    assert [(p.code, p.field) for p in stripe.validate(config)] == [
        ("config.non-string", "apiKey"),
        ("field.invalid", "region"),
        ("field.invalid", "webhookUrl"),
        ("field.unknown", "extra"),
        ("field.unknown", "weird"),
        ("config.non-string", "weird"),
    ]


@pytest.mark.parametrize("config", [[], "text", 3, True])
def test_validate_config_not_object(registry, config):
    problems = registry.apps["stripe"].validate(config)
    assert [(p.code, p.field) for p in problems] == [("config.not-object", None)]


def test_validate_none_counts_as_empty(registry):
    stripe = registry.apps["stripe"]
    assert stripe.validate(None) == []
    assert [(p.code, p.field) for p in stripe.validate(None, status="configured")] == [
        ("field.missing", "apiKey"), ("field.missing", "region"),
    ]


def test_missing_only_when_configured_or_asked(registry):
    stripe = registry.apps["stripe"]
    config = {"apiKey": "", "webhookUrl": ""}  # empty optional values are fine
    assert stripe.validate(config) == []
    assert stripe.validate(config, status="installed") == []
    expected = [
        Problem("field.missing", "apiKey", "required field is empty"),
        Problem("field.missing", "region", "required field is missing"),
    ]
    assert stripe.validate(config, status="configured") == expected
    assert stripe.validate(config, complete=True) == expected


def test_stored_password_values_are_not_type_checked(registry):
    slack = registry.apps["slack"]  # botToken has a pattern; stored values are ciphertexts
    config = {"botToken": "0123:4567:89ab", "channel": "#ops"}
    assert slack.validate(config, status="configured") == []
    assert [(p.code, p.field) for p in slack.validate(config, encrypted=False)] == [("field.invalid", "botToken")]


# --- the marshmallow schema: the write path ---

def test_schema_is_a_marshmallow_schema_per_app(registry):
    schema = registry.apps["stripe"].schema()
    assert isinstance(schema, Schema) and type(schema).__name__ == "StripeConfigSchema"
    assert schema is registry.apps["stripe"].schema()  # built once
    assert set(schema.fields) == {"apiKey", "region", "webhookUrl"}
    assert schema.fields["apiKey"].required and not schema.fields["webhookUrl"].required
    assert schema.load({"apiKey": "sk", "region": "us"}) == {"apiKey": "sk", "region": "us"}


def test_schema_validators_raise(registry):
    # marshmallow treats a validator returning False as valid; ours raise.
    errors = registry.apps["stripe"].schema().validate({"apiKey": "sk", "region": "mx"})
    assert errors == {"region": ["field.invalid: not one of the options: us, eu"]}


def test_schema_problems_map_to_our_codes(registry):
    stripe = registry.apps["stripe"]
    problems = schema_problems(stripe, {"apiKey": 5, "region": "", "webhookUrl": "ftp://x", "other": "y"})
    assert [(p.code, p.field) for p in problems] == [
        ("config.non-string", "apiKey"),
        ("field.missing", "region"),
        ("field.invalid", "webhookUrl"),
        ("field.unknown", "other"),
    ]
    assert all(not p.message.startswith("field.") for p in problems)
    assert [(p.code, p.field) for p in schema_problems(stripe, None)] == [
        ("field.missing", "apiKey"), ("field.missing", "region"),
    ]
    assert [(p.code, p.field) for p in schema_problems(stripe, ["x"])] == [("config.not-object", None)]


def test_schema_partial_allows_incomplete_configs(registry):
    stripe = registry.apps["stripe"]
    assert schema_problems(stripe, {"webhookUrl": "https://x.example"}, complete=False) == []
    assert schema_problems(stripe, {"apiKey": ""}, complete=False) == []  # empty = not given
    assert [(p.code, p.field) for p in schema_problems(stripe, {"region": "mx"}, complete=False)] == [
        ("field.invalid", "region"),
    ]


def test_schema_checks_password_plaintext(registry):
    slack = registry.apps["slack"]
    assert [(p.code, p.field) for p in schema_problems(slack, {"botToken": "not-a-token"}, complete=False)] == [
        ("field.invalid", "botToken"),
    ]


CONFIGS = [
    {},
    None,
    {"apiKey": "sk", "region": "us"},
    {"apiKey": "", "region": "mx", "webhookUrl": "nope"},
    {"apiKey": 1, "region": None, "x": 2, "y": "z"},
    {"webhookUrl": ""},
    [1, 2],
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("complete", [True, False])
def test_validate_and_schema_agree_on_plaintext(registry, config, complete):
    stripe = registry.apps["stripe"]
    fast = sorted((p.code, p.field or "") for p in stripe.validate(config, complete=complete, encrypted=False))
    slow = sorted((p.code, p.field or "") for p in schema_problems(stripe, config, complete=complete))
    assert fast == slow


def test_validate_cost(registry, capsys):
    """Figures, not assertions on time: validate() runs once per stored row in the audit."""
    slack = registry.apps["slack"]
    config = {"botToken": "0123:4567:89ab", "channel": "#ops", "mode": "bot", "notes": "hello"}
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        slack.validate(config, status="configured")
    fast = (time.perf_counter() - start) / n * 1e6
    plaintext = dict(config, botToken="xoxb-123-abc")
    start = time.perf_counter()
    for _ in range(n // 4):
        schema_problems(slack, plaintext)
    slow = (time.perf_counter() - start) / (n // 4) * 1e6
    with capsys.disabled():
        print(f"\nvalidate(): {fast:.2f} µs per 4-field config; marshmallow schema_problems(): {slow:.2f} µs")


# --- definitions built in code ---

def test_definitions_can_be_built_in_code():
    app = AppDefinition("crm", "CRM", None, (FieldDefinition("url", "URL", "url", required=True),))
    assert app.validate({"url": "nope"}) == [Problem("field.invalid", "url", "not an absolute http(s) URL")]
    assert parse_registry({"crm": {"fields": []}}).apps["crm"].fields == ()


# --- the command ---

def test_cli_check_valid_file(capsys):
    code = main(["registry", "check", str(FIXTURES / "valid.json")])
    out, err = capsys.readouterr()
    assert main(["registry", "check", str(FIXTURES / "invalid-many.json").replace("invalid-many", "one-app")]) == 0
    assert ": ok — 1 app, 1 field (1 secret, 1 required)" in capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"{FIXTURES / 'valid.json'}: ok — 3 apps, 10 fields (2 secret, 5 required)")
    assert "*apiKey (password, secret)" in out and "logo (image → text)" in out
    assert err == "warning: app 'mailer', field 'logo': unknown type 'image', validated as text\n"


def test_cli_check_json(capsys):
    code = main(["registry", "check", str(FIXTURES / "valid.json"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] is True
    assert report["summary"]["apps"] == 3
    region = report["apps"][0]["fields"][1]
    assert region == {"key": "region", "label": "Region", "type": "select", "declared_type": "select",
                      "required": True, "secret": False, "pattern": None,
                      "options": [{"value": "us", "label": "us"}, {"value": "eu", "label": "eu"}]}


def test_cli_check_strict_fails_on_warnings(capsys):
    assert main(["registry", "check", str(FIXTURES / "valid.json"), "--strict"]) == ExitCode.FINDINGS


def test_cli_check_invalid_file_lists_every_problem(capsys):
    path = FIXTURES / "invalid-many.json"
    code = main(["registry", "check", str(path)])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "  app 'broken', field 'region': a select field" in err
    assert "  app 'broken', field 'hook': \"pattern\"" in err
    assert err.rstrip().splitlines()[-1].startswith(f"error: {path}: app 'broken'")


def test_cli_check_invalid_file_json(capsys):
    code = main(["registry", "check", str(FIXTURES / "invalid-many.json"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == ExitCode.USAGE and report["ok"] is False and len(report["problems"]) == 2


def test_cli_check_missing_file(tmp_path, capsys):
    code = main(["registry", "check", str(tmp_path / "nope.json")])
    assert code == ExitCode.USAGE
    assert capsys.readouterr().err.startswith(f"error: registry file not found: {tmp_path / 'nope.json'}")


def test_cli_check_uses_toolkit_registry(monkeypatch, capsys):
    monkeypatch.setenv("TOOLKIT_REGISTRY", str(FIXTURES / "valid.json"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # not touched by `check`
    assert main(["registry", "check"]) == 0
    assert "3 apps" in capsys.readouterr().out
