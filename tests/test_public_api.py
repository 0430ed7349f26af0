"""The public API: every name in `toolkit.__all__` resolves, and importing stays light."""

import subprocess
import sys

import toolkit


def test_every_public_name_resolves():
    for name in toolkit.__all__:
        assert getattr(toolkit, name) is not None, name


def test_unknown_name_is_an_attribute_error():
    try:
        toolkit.does_not_exist
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_toolkit_loads_no_front_end_or_optional_dependency():
    code = "import sys, toolkit; print(sorted(m for m in ('textual', 'pandas', 'matplotlib', 'peewee') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
