"""Settings: environment, then .env.local, then .env (Next.js order); errors name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.errors import ConfigError
from toolkit.settings import ALL_VARIABLES, Settings, load_settings

KEY = "ab" * 32
OLD_KEYS = ("cd" * 32, "ef" * 32)


def write(directory: Path, name: str, **values):
    (directory / name).write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def test_environment_beats_env_local_beats_env(tmp_path):
    write(tmp_path, ".env", DATABASE_URL="postgresql://h/from_env", DIRECT_URL="postgresql://h/direct_env",
          TOOLKIT_REGISTRY="registry-env.json")
    write(tmp_path, ".env.local", DATABASE_URL="postgresql://h/from_local", DIRECT_URL="postgresql://h/direct_local")
    environ = {"DATABASE_URL": "postgresql://h/from_environ"}
    settings = load_settings(cwd=tmp_path, environ=environ)
    assert settings.database_url == "postgresql://h/from_environ"
    assert settings.direct_url == "postgresql://h/direct_local"
    assert settings.registry_path == Path("registry-env.json")


def test_files_alone_and_nothing_at_all(tmp_path):
    assert load_settings(cwd=tmp_path, environ={}) == Settings()
    assert load_settings(cwd=tmp_path, environ={}).uses_demo
    write(tmp_path, ".env", DATABASE_URL="postgresql://h/db")
    assert not load_settings(cwd=tmp_path, environ={}).uses_demo


def test_flags_win_over_everything(tmp_path):
    write(tmp_path, ".env.local", DATABASE_URL="postgresql://h/local")
    settings = load_settings(cwd=tmp_path, environ={"DATABASE_URL": "postgresql://h/env"},
                             database_url="postgresql://h/flag", direct_url=None)
    assert settings.database_url == "postgresql://h/flag"
    assert settings.direct_url is None  # a flag left unset does not erase anything


def test_blank_values_count_as_unset(tmp_path):
    write(tmp_path, ".env", DATABASE_URL="postgresql://h/db")
    # An exported-but-empty variable in the environment still wins, and means "unset".
    assert load_settings(cwd=tmp_path, environ={"DATABASE_URL": "  "}).database_url is None


def test_previous_keys_are_a_comma_separated_list(tmp_path):
    environ = {"ENCRYPTION_KEY": KEY, "ENCRYPTION_KEY_PREVIOUS": f" {OLD_KEYS[0]} ,,{OLD_KEYS[1]}, "}
    settings = load_settings(cwd=tmp_path, environ=environ)
    assert settings.encryption_key == KEY
    assert settings.encryption_key_previous == OLD_KEYS


def test_keys_never_appear_in_the_repr(tmp_path):
    environ = {"ENCRYPTION_KEY": KEY, "ENCRYPTION_KEY_PREVIOUS": ",".join(OLD_KEYS), "TOOLKIT_KEY_SALT": "pepper-salt"}
    text = repr(load_settings(cwd=tmp_path, environ=environ))
    for secret in (KEY, *OLD_KEYS, "pepper-salt"):
        assert secret not in text


@pytest.mark.parametrize("variable, value, says", [
    ("TOOLKIT_IV_LENGTH", "14", "TOOLKIT_IV_LENGTH must be one of 12, 16, got 14"),
    ("TOOLKIT_IV_LENGTH", "twelve", "TOOLKIT_IV_LENGTH must be a whole number, got 'twelve'"),
    ("TOOLKIT_MASK_VISIBLE", "4.5", "TOOLKIT_MASK_VISIBLE must be a whole number"),
    ("TOOLKIT_KEY_DERIVATION", "pbkdf2", "TOOLKIT_KEY_DERIVATION must be one of hex, raw, sha256, scrypt, got 'pbkdf2'"),
])
def test_errors_name_the_variable(tmp_path, variable, value, says):
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, environ={variable: value})
    assert says in info.value.one_line()


def test_errors_from_a_dotenv_file_name_the_variable_too(tmp_path):
    write(tmp_path, ".env.local", TOOLKIT_IV_LENGTH="7")
    with pytest.raises(ConfigError, match="TOOLKIT_IV_LENGTH must be one of 12, 16, got 7"):
        load_settings(cwd=tmp_path, environ={})


def test_only_the_toolkits_variables_are_read_from_the_environment(tmp_path):
    assert "PATH" not in ALL_VARIABLES
    settings = load_settings(cwd=tmp_path, environ={"PATH": "/bin", "DATABASE_URL": "postgresql://h/db"})
    assert settings == Settings(database_url="postgresql://h/db")


# ---- end to end: the command line reads .env files from its working directory ----------------

def test_cli_reads_dotenv_from_the_working_directory(run_cli, tmp_path):
    write(tmp_path, ".env", DATABASE_URL="mysql://nope/db")
    result = run_cli("schema", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert "DATABASE_URL must start with postgresql://" in result.stderr


@pytest.mark.postgres
def test_cli_flag_beats_environment_and_files(run_cli, pg_url, tmp_path):
    write(tmp_path, ".env.local", DATABASE_URL="mysql://nope/db")
    result = run_cli("--database-url", pg_url, "schema", "check", env={"DATABASE_URL": "mysql://also-wrong/db"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "matches the app's schema" in result.stdout
