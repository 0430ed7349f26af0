"""The `toolkit` command line. Each verb lives in its own module and is imported only when
run, so `toolkit decrypt` never pays for Textual and `--help` stays fast.

Expected failures (`ToolkitError`) become one line on stderr and the exit code of
DESIGN.md §4.2; data goes to stdout, diagnostics to stderr.
"""

from __future__ import annotations

import os
import sys

import click

from ..errors import ExitCode, ToolkitError
from ..safe_text import escape_text
from ._lazy import LazyGroup

# verb -> ("module:attribute" relative to this package, the one-line help `toolkit -h` shows).
COMMANDS = {
    "dashboard": ("_dashboard:dashboard", "Browse users, installations and findings in the terminal."),
    "audit": ("_audit:audit", "Find every broken installation and badly stored secret."),
    "show": ("_show:show", "Show one installation, secrets masked unless --reveal."),
    "decrypt": ("_crypto:decrypt", "Decrypt one stored value (stdin when VALUE is omitted)."),
    "encrypt": ("_crypto:encrypt", "Encrypt one value as the app does (stdin when VALUE is omitted)."),
    "keys": ("_keys:keys", "Generate keys, count values per key, rotate to the current key."),
    "migrate": ("_migrate:migrate", "Apply pending drizzle migrations over DIRECT_URL."),
    "schema": ("_migrate:schema", "Compare the live schema with the app's (schema check)."),
    "registry": ("_registry:registry", "Validate and summarise a registry file."),
    "repair": ("_repair:repair", "Fix mechanical audit findings, opt-in by code."),
    "demo": ("_demo:demo", "Create or rebuild the embedded demo database."),
}


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings=CONTEXT_SETTINGS)
@click.option("--database-url", allow_from_autoenv=False, metavar="URL", help="Runtime database URL (env DATABASE_URL). Default: the embedded demo database.")
@click.option("--registry", "registry_path", allow_from_autoenv=False, type=click.Path(dir_okay=False), help="Registry JSON file (env TOOLKIT_REGISTRY).")
@click.version_option(package_name="installation-toolkit", prog_name="toolkit")
@click.pass_context
def cli(ctx, database_url, registry_path):
    """Operator's toolkit for the app's installations database.

    Audit configs and stored secrets, inspect and decrypt one installation, rotate the
    encryption key, migrate the schema and browse it all in a terminal dashboard.

    Settings come from the environment, then .env.local, then .env (flags win). With no
    DATABASE_URL every command uses the embedded demo database.

    Exit codes: 0 ok, 1 findings or drift, 2 usage or configuration error, 3 database error.
    """
    from pathlib import Path

    from ..context import Context
    from ..settings import load_settings

    from ..db.connection import install_interruptible_waits, restore_waits

    overrides = {"database_url": database_url}
    if registry_path:
        overrides["registry_path"] = Path(registry_path)
    settings = load_settings(**overrides)
    # Ctrl-C and a deadline end every database wait (the dashboard lifts it for its threads).
    previous_wait = install_interruptible_waits(statement_timeout=settings.statement_timeout,
                                                connect_timeout=settings.connect_timeout)
    # In-process callers (tests) get theirs back when the command ends, however it ends.
    ctx.call_on_close(lambda: restore_waits(previous_wait))
    ctx.obj = Context(settings)
    ctx.call_on_close(ctx.obj.close)


def main(argv=None) -> int:
    """Entry point of the console script and `python -m toolkit`."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # a second Ctrl-C while the first one unwinds
        return _interrupted()


def _interrupted() -> int:
    """Ctrl-C: one line, exit 130 (128 + SIGINT, as shells report it). Whatever was open is
    rolled back by closing its connection; files are written whole or not at all."""
    click.echo("interrupted", err=True)
    return INTERRUPTED


INTERRUPTED = 130


def _by_interrupt(exc: BaseException) -> bool:
    """An error raised while unwinding from Ctrl-C (a rollback on the connection psycopg2 just
    closed, say) still reports the interrupt, not a database error."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc, seen = exc.__context__, seen + 1
    return False


def _main(argv) -> int:
    try:
        # Without standalone mode click returns `ctx.exit(code)`'s code instead of raising.
        # auto_envvar_prefix: every flag has an environment twin, e.g. --fail-on is
        # TOOLKIT_AUDIT_FAIL_ON; the flag wins when both are given. Deliberately none for
        # --reveal, --yes and --write (an operator types those), nor for the flags whose
        # variables settings.py owns (--database-url, --registry, --direct-url).
        result = cli.main(args=argv, prog_name="toolkit", standalone_mode=False, auto_envvar_prefix="TOOLKIT")
    except ToolkitError as exc:
        if _by_interrupt(exc):
            return _interrupted()
        click.echo(f"error: {exc.one_line()}", err=True)
        return int(exc.exit_code)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        # One line, as for every expected error (click's own shows three: usage, try, error).
        where = f" — see `{exc.ctx.command_path} --help`" if exc.ctx is not None else ""
        click.echo(f"error: {escape_text(exc.format_message())}{where}", err=True)
        return int(ExitCode.USAGE)
    except click.ClickException as exc:
        click.echo(f"error: {escape_text(exc.format_message())}", err=True)
        return int(ExitCode.USAGE)
    except click.exceptions.Abort as exc:
        if _by_interrupt(exc):  # click turns Ctrl-C into Abort (after a newline, off the ^C)
            return _interrupted()
        click.echo("aborted", err=True)
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:  # a bug or an unforeseen failure: still one line, exit 3
        if _by_interrupt(exc):
            return _interrupted()
        if os.environ.get("TOOLKIT_DEBUG"):
            raise
        # Only the type: an arbitrary exception's message may quote data (a secret).
        click.echo(f"error: unexpected {type(exc).__name__} — a bug; set TOOLKIT_DEBUG=1 for the traceback and report it", err=True)
        return int(ExitCode.RUNTIME)
    return result if isinstance(result, int) else int(ExitCode.OK)


def run() -> None:
    sys.exit(main())
