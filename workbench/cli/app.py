"""The root `workbench` command: global options, error handling and output helpers.

Commands are thin: they parse arguments, call one library function and print the result as a
rich table for people or as JSON (`--json`) for scripts. A `WorkbenchError` becomes a one-line
message on stderr and exit code 2 (3 when the store stayed busy); nothing else is caught, so a
real bug keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any, Optional

import typer
from rich.console import Console

from workbench.errors import WorkbenchError
from workbench.workspace import ENV_HOME, Workspace, open_workspace

app = typer.Typer(
    name="workbench",
    help="Workbench: data snapshots, tracked notebook runs, model registry and serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


@app.callback()
def _root(
    home: Optional[str] = typer.Option(
        None, "--home", help=f"Workspace folder (default: ${ENV_HOME} or the nearest .workbench/)."
    ),
    version: bool = typer.Option(False, "--version", help="Show the version and exit."),
) -> None:
    if version:
        from workbench import __version__

        console.print(f"workbench {__version__}")
        raise typer.Exit()
    global _home_given
    _home_given = bool(home)
    if home:
        # Through the environment so that kernels and workers started from here see it too.
        os.environ[ENV_HOME] = os.path.abspath(os.path.expanduser(home))


_home_given = False


def workspace() -> Workspace:
    return open_workspace()


def workspace_or_server() -> Workspace | None:
    """The workspace folder a reading command passes as `ws`, or None when a team server is configured
    and no `--home` was given: the library functions then answer from the server (`remote.dispatch`)."""
    if not _home_given:
        from workbench.remote.config import resolve

        if resolve() is not None:
            return None
    return open_workspace()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_default, indent=2) + "\n")


def fail(message: str, hint: str | None = None) -> None:
    """Stop the command with a user-facing error (exit code 2)."""
    raise WorkbenchError(message, hint)


def _takes_param_pairs(argv: list[str]) -> bool:
    """True when the command `argv` names has a repeatable `-p/--param NAME=VALUE` option (`run`,
    `sweep`), not `-p PORT` (`serve`, `guard`): only then may `-p NAME VALUE` be joined."""
    import typer.main

    command: Any = typer.main.get_command(app)  # typer may carry its own click: duck-typed below
    for token in argv:
        if not hasattr(command, "commands"):
            break
        command = command.commands.get(token, command)
    return any(p.param_type_name == "option" and "-p" in p.opts and p.multiple for p in command.params)


def join_param_pairs(argv: list[str]) -> list[str]:
    """Accept papermill's `-p NAME VALUE` as well as `-p NAME=VALUE` (click takes one value)."""
    if not _takes_param_pairs(argv):
        return list(argv)
    result: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("-p", "--param") and index + 1 < len(argv):
            name = argv[index + 1]
            if "=" not in name and index + 2 < len(argv):
                result += [arg, f"{name}={argv[index + 2]}"]
                index += 3
                continue
        result.append(arg)
        index += 1
    return result


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `workbench` console script."""
    from workbench.startup import skip_slow_optional_imports

    skip_slow_optional_imports()
    from workbench.cli import commands  # noqa: F401  (registers every command on `app`)

    args = join_param_pairs(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, standalone_mode=True)
    except WorkbenchError as exc:
        err_console.print(f"[bold red]Error:[/] {exc.message}", highlight=False, soft_wrap=True)
        if exc.hint:
            err_console.print(f"[dim]{exc.hint}[/]", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        sys.exit(130)
    except OSError as exc:
        import errno

        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        err_console.print(f"[bold red]Error:[/] No space left to write {exc.filename or 'a file'}: {exc.strerror}.",
                          highlight=False, soft_wrap=True)  # fmt: skip
        err_console.print("[dim]Free some disk space and try again; nothing partial was recorded.[/]")
        sys.exit(2)
