"""Generate the CLI reference (docs/cli.md) from the commands themselves.

`python -m workbench.cli.reference > docs/cli.md` rewrites it; a test fails when the committed
file no longer matches, so the reference can never drift from `--help`.
"""

from __future__ import annotations

from typing import Any

import typer

from workbench.cli.app import app


def _command_tree() -> Any:
    from workbench.cli import commands  # noqa: F401  (registers every command)

    return typer.main.get_command(app)


def _param_line(param: Any) -> str:
    if param.param_type_name == "argument":
        required = "" if param.required else " (optional)"
        name = (param.name or "").upper()
        help_text = getattr(param, "help", None) or ""
        return f"- `{name}`{required}: {help_text}".rstrip(": ")
    names = ", ".join(f"`{o}`" for o in param.opts)
    help_text = getattr(param, "help", None) or ""
    default = ""
    if getattr(param, "show_default", True) and param.default not in (None, False, (), []):
        default = f" (default: `{param.default}`)"
    return f"- {names}: {help_text}{default}".rstrip(": ")


def _render(cmd: Any, path: list[str], out: list[str]) -> None:
    # Duck-typed: typer ships its own copy of click, so isinstance checks would not match.
    if cmd.hidden:
        return
    title = " ".join(path)
    out.append(f"{'#' * min(len(path) + 1, 4)} `{title}`\n")
    if cmd.help:
        out.append(cmd.help.strip().split("\n\n")[0] + "\n")
    params = [p for p in cmd.params if p.name not in ("help",)]
    is_group = hasattr(cmd, "commands")
    if params and (not is_group or getattr(cmd, "invoke_without_command", False)):  # `workbench server` runs too
        out.append("\n".join(_param_line(p) for p in params) + "\n")
    if is_group:
        for name in sorted(cmd.commands):
            _render(cmd.commands[name], [*path, name], out)


def render() -> str:
    out = [
        "# CLI reference\n",
        "Generated from the commands' own help by `python -m workbench.cli.reference`; "
        "`workbench COMMAND --help` shows the same. Global option: `--home PATH` (workspace).\n",
    ]
    _render(_command_tree(), ["workbench"], out)
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
