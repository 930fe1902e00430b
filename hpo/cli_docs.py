"""The command-line reference (docs/cli.md), written from the commands themselves so it cannot drift:
``python -m hpo.cli_docs > docs/cli.md``; a test checks the committed page is current."""

from __future__ import annotations

from typing import Any

import typer

from hpo.cli import app

HEAD = """# Command line

Every command, with its arguments and options, as `hpo COMMAND --help` prints them. Errors are one line on
stderr with exit code 2; an interrupted command cleans up, says in one line how to resume, then ends killed by
the signal it got, as an untrapped program would (a shell shows 130 for Ctrl-C, 143 for SIGTERM, and a script
running it stops too). The storage defaults to `$HPO_STORAGE`, else `sqlite:///hpo.db`.
"""


def _params(cmd: Any) -> list[str]:
    rows = []
    for p in cmd.params:
        if p.name == "help" or getattr(p, "hidden", False):  # internal (hpo run's held children)
            continue
        if getattr(p, "param_type_name", "") == "argument":
            name = str(p.name).upper()
        else:
            name = ", ".join(p.opts)
        help_text = " ".join((getattr(p, "help", None) or "").split())
        default = p.default if not callable(p.default) else None
        shown = f" (default: `{default}`)" if default not in (None, False, "", ()) and not p.required else ""
        rows.append(f"| `{name}` | {help_text}{shown} |")
    return rows


def _command(path: str, cmd: Any) -> list[str]:
    doc = " ".join((cmd.help or "").split())
    out = [f"## `hpo {path}`", "", doc, ""]
    rows = _params(cmd)
    if rows:
        out += ["| argument or option | meaning |", "| --- | --- |", *rows, ""]
    return out


def render() -> str:
    group: Any = typer.main.get_command(app)
    lines = [HEAD]
    ctx = group.context_class(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):  # a group (typer vendors its own click)
            for sub in cmd.list_commands(ctx):
                lines += _command(f"{name} {sub}", cmd.get_command(ctx, sub))
        else:
            lines += _command(name, cmd)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
