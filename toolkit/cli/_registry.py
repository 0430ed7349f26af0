"""`toolkit registry check [PATH] [--json]`: validate a registry file and summarise it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import ExitCode, RegistryError, ToolkitError
from ..safe_text import escape_text
from ._context import get_context
from ._output import write_stdout
from ._terminal import TextOutput, error_line, no_pager_option


class RegistryHasWarnings(ToolkitError):
    """`--strict` and the registry has warnings."""

    exit_code = ExitCode.FINDINGS


@click.group()
def registry():
    """Validate and summarise the app registry (the JSON the app's TypeScript registry exports)."""


@registry.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary (or the problems) as JSON on stdout.")
@click.option("--strict", is_flag=True, help="Exit 1 when the registry has warnings (unknown field types…).")
@no_pager_option
def check(path, as_json, strict, no_pager):
    """Check PATH (default: TOOLKIT_REGISTRY / --registry) and list its apps and fields.

    Exit 0 when the file is valid, 1 with --strict and warnings, 2 when it is invalid.

    \b
    Examples:
      toolkit registry check registry.json
      toolkit registry check --json | jq .apps
    """
    from ..registry import RegistryStructureError, load_registry

    try:
        if path is None:
            loaded = get_context().registry
        else:
            loaded = load_registry(path)
    except RegistryError as exc:
        problems = getattr(exc, "problems", None) or [exc.message]
        if as_json:
            write_stdout(json.dumps({"ok": False, "path": str(path) if path else None, "problems": problems}, indent=2), newline=True)
        elif isinstance(exc, RegistryStructureError) and len(problems) > 1:
            for problem in problems:
                click.echo(f"  {escape_text(problem)}", err=True)
        exc.hint = None  # "run `toolkit registry check`" — this is that command, and the list is above
        raise  # the one-line error and exit code 2

    if as_json:
        write_stdout(json.dumps(_as_json(loaded), indent=2, ensure_ascii=False), newline=True)
    else:
        with TextOutput(no_pager=no_pager) as out:  # the warnings after the pager, not under it
            _print_text(loaded, out.line)
        for warning in loaded.warnings:
            error_line(f"warning: {escape_text(warning)}", "warning")
    if strict and loaded.warnings:
        raise RegistryHasWarnings(f"{len(loaded.warnings)} warning(s) and --strict")


def _print_text(loaded, echo) -> None:
    summary = loaded.summary()
    where = summary["path"] or "registry"
    echo(
        f"{where}: ok — {_count(summary['apps'], 'app')}, {_count(summary['fields'], 'field')} "
        f"({summary['secret_fields']} secret, {summary['required_fields']} required)"
    )
    width = max((len(app.id) for app in loaded), default=0)
    for app in loaded:
        category = f" [{app.category}]" if app.category else ""
        echo(escape_text(f"  {app.id:<{width}}  {app.name}{category}"))
        for field in app.fields:
            marks = "*" if field.required else " "
            details = field.type if field.type == field.declared_type else f"{field.declared_type} → {field.type}"
            if field.is_secret:
                details += ", secret"
            if field.options:
                details += ": " + ", ".join(o.value for o in field.options)
            if field.pattern:
                details += f", pattern {field.pattern}"
            echo(escape_text(f"  {'':<{width}}    {marks}{field.key} ({details})"))
    echo("  (* required)")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _as_json(loaded) -> dict:
    return {
        "ok": True,
        "summary": loaded.summary(),
        "apps": [
            {
                "id": app.id,
                "name": app.name,
                "category": app.category,
                "fields": [
                    {
                        "key": f.key,
                        "label": f.label,
                        "type": f.type,
                        "declared_type": f.declared_type,
                        "required": f.required,
                        "secret": f.is_secret,
                        "options": [{"value": o.value, "label": o.label} for o in f.options],
                        "pattern": f.pattern,
                    }
                    for f in app.fields
                ],
            }
            for app in loaded
        ],
    }
