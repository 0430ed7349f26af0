"""Hints and errors point the right way: every command a hint names exists with those flags,
every README section a message names exists, a decrypt with the demo keys says so, and no
command tells you to run that same command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from toolkit.codes import CODES
from toolkit.cli import cli
from toolkit.crypto import Keyring
from toolkit.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# `toolkit` then words and flags up to the first character that cannot be part of a command line.
COMMAND = re.compile(r"toolkit((?: (?:--?[a-z][\w-]*|[a-z][\w.-]*[\w]))+)")


def commands_in(text: str) -> list[list[str]]:
    return [match.group(1).split() for match in COMMAND.finditer(text)]


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """Walk the click tree: the command the words name, and what is left (its flags and values)."""
    command, ctx = cli, click.Context(cli)
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        sub = command.get_command(ctx, words[0])
        assert sub is not None, f"no command {words[0]!r} under {command.name!r}"
        command, ctx, words = sub, click.Context(sub, parent=ctx), words[1:]
    return command, words


def check_command_line(words: list[str]) -> None:
    command, rest = resolve(words)
    assert not isinstance(command, click.Group), f"{' '.join(words)!r} names a group, not a command"
    options = {opt: param for param in command.params for opt in param.opts if isinstance(param, click.Option)}
    index = 0
    while index < len(rest):
        word = rest[index]
        assert word.startswith("--"), f"{word!r}: an argument where a flag was expected in {words}"
        assert word in options, f"{command.name} has no option {word}"
        param = options[word]
        if not param.is_flag:
            index += 1
            value = rest[index]
            if isinstance(param.type, click.Choice):
                assert value in param.type.choices, f"{word} {value}: not one of {param.type.choices}"
        index += 1


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_command_a_hint_names_exists_with_those_flags(code):
    for words in commands_in(CODES[code].hint):
        check_command_line(words)


def test_the_hints_name_the_commands_that_fix_the_finding():
    assert ["keys", "rotate", "--include-current"] in commands_in(CODES["secret.nonce-reuse"].hint)
    assert ["repair", "--fix", "secret.plaintext"] in commands_in(CODES["secret.plaintext"].hint)


def test_the_command_parser_rejects_what_does_not_exist():
    """The check above is only worth something if it fails on a wrong hint."""
    for wrong in (["keys", "rotate", "--include-everything"], ["repair", "--fix", "secret.nonsense"],
                  ["encrypt-all"]):
        with pytest.raises(AssertionError):
            check_command_line(wrong)


README_MENTION = re.compile(r"README[^'\"\n]{0,12}['\"]([^'\"\n]+)['\"]")


def readme_headings() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a `# comment` in a code block is no heading
    return {line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")}


def test_every_readme_section_a_message_names_exists():
    headings = readme_headings()
    mentions = []
    for path in (ROOT / "toolkit").rglob("*.py"):
        for section in README_MENTION.findall(path.read_text(encoding="utf-8")):
            mentions.append((path.relative_to(ROOT), section))
    assert mentions, "the pattern finds the README mentions (e.g. context.py's registry hint)"
    missing = [(str(path), section) for path, section in mentions if section not in headings]
    assert not missing


@pytest.fixture
def toolkit(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLKIT_", "ENCRYPTION_", "DATABASE_", "DIRECT_"))}
    base.update(TOOLKIT_ACCESS_LOG=str(tmp_path / "access.log"), TOOLKIT_DATA_DIR=str(tmp_path / "data"))

    def run(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "toolkit", *args], input=stdin, capture_output=True,
                              text=True, cwd=tmp_path, env=base, timeout=60)

    return run


def test_a_decrypt_with_the_demo_keys_says_so_and_names_encryption_key(toolkit):
    # A value from a real app (another key), decrypted with neither ENCRYPTION_KEY nor DATABASE_URL.
    value = Keyring.from_settings(Settings(encryption_key="ab" * 32)).encrypt("sk_live_real")
    result = toolkit("decrypt", stdin=value)
    assert result.returncode == 2 and result.stdout == ""
    assert "demo keys" in result.stderr and "ENCRYPTION_KEY" in result.stderr
    assert "ENCRYPTION_KEY_PREVIOUS" not in result.stderr  # not the fix: no real key is configured at all
    assert len(result.stderr.strip().splitlines()) == 1


def test_registry_check_does_not_tell_you_to_run_registry_check(toolkit, tmp_path):
    broken = tmp_path / "registry.json"
    broken.write_text('{"a": {"name": "A", "fields": [{"key": "x", "type": "text", "required": "yes"}, '
                      '{"label": "no key"}]}}', encoding="utf-8")
    result = toolkit("registry", "check", str(broken))
    assert result.returncode == 2
    assert "registry check" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("  ")]) >= 2  # every problem listed
