"""Every failure the toolkit expects, and the exit code each one maps to.

    ToolkitError                    one line for the operator; never a traceback
    ├── ConfigError        (2)      a setting is missing or malformed; names the variable
    ├── UsageError         (2)      the command cannot do what was asked
    ├── RegistryError      (2)      the registry file is missing or structurally invalid
    ├── CryptoError        (2)
    │   ├── MalformedCiphertext     not `iv:tag:ciphertext` with valid hex and lengths
    │   ├── UndecryptableError      no key of the keyring authenticates the value
    │   └── AlreadyEncrypted        refusing to encrypt a value that is a ciphertext
    ├── ConfigValidationError (2)   a config fails the app's schema; nothing was written
    ├── NotFound           (2)      the installation or user asked for does not exist
    ├── ConflictError      (3)      a concurrent write changed the row since it was read
    └── DatabaseError      (3)      unreachable, refused, dropped or read-only database

Messages never contain a secret value: they name fields, variables and ids. They may quote
customer text (an app id, a config key): `one_line()` escapes it (`safe_text.escape_text`),
so an error is one line whatever it quotes and never drives the reader's terminal.
"""

from __future__ import annotations

import enum

from .safe_text import escape_text


class ExitCode(enum.IntEnum):
    """Process exit codes: part of the command line's contract (DESIGN.md §4.2)."""

    OK = 0
    FINDINGS = 1  # findings at or above the fail level, or schema drift
    USAGE = 2  # usage or configuration error
    RUNTIME = 3  # database or runtime error


class ToolkitError(Exception):
    exit_code = ExitCode.RUNTIME

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = f"{self.message} — {self.hint}" if self.hint else self.message
        return escape_text(text)


class ConfigError(ToolkitError):
    exit_code = ExitCode.USAGE


class UsageError(ToolkitError):
    exit_code = ExitCode.USAGE


class RegistryError(ToolkitError):
    exit_code = ExitCode.USAGE


class CryptoError(ToolkitError):
    exit_code = ExitCode.USAGE


class MalformedCiphertext(CryptoError):
    pass


class UndecryptableError(CryptoError):
    pass


class AlreadyEncrypted(CryptoError):
    pass


class ConfigValidationError(ToolkitError):
    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, problems=(), hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = list(problems)


class NotFound(ToolkitError):
    exit_code = ExitCode.USAGE


class ConflictError(ToolkitError):
    exit_code = ExitCode.RUNTIME


class DatabaseError(ToolkitError):
    exit_code = ExitCode.RUNTIME
