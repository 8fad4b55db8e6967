"""`workbench doctor`: integrity checks and safe repairs, plus this user's fork servers."""

from __future__ import annotations

from typing import Any

import typer

from workbench.cli.app import JsonOption, app, console, print_json, workspace
from workbench.cli.tables import print_table
from workbench.doctor import run_checks

_STYLE = {"ok": "green", "warning": "yellow", "error": "bold red"}


@app.command("doctor")
def doctor(
    fix: bool = typer.Option(False, "--fix", help="Repair what can be repaired safely."),
    rebuild: bool = typer.Option(
        False,
        "--rebuild-catalog",
        help="Move the catalog aside and rebuild it from the run folders (and whatever the old file still holds).",
    ),  # fmt: skip
    stop_fork_servers: bool = typer.Option(
        False,
        "--stop-fork-servers",
        help="Stop your fork servers (fast kernels; they restart on demand) and exit; running kernels keep running.",
    ),  # fmt: skip
    as_json: bool = JsonOption,
) -> None:
    """Check the workspace: catalog, runs, models, data, orphan and scratch files (exit 1 on errors).

    Also lists your running fork servers (fast kernels): pid, preloaded modules, memory, idle time.
    """
    if stop_fork_servers:
        _stop_fork_servers(as_json)
        raise typer.Exit(0)
    if rebuild:
        from workbench.runs.rebuild import describe, rebuild_catalog

        report = rebuild_catalog(workspace())
        if as_json:
            print_json(report)
        else:
            for line in describe(report):
                console.print(line, highlight=False)
        raise typer.Exit(1 if report["not_recovered"] else 0)
    findings = [f.to_dict() for f in run_checks(workspace(), fix=fix)]
    servers_entry = _fork_servers_entry()
    if as_json:
        print_json([*findings, servers_entry])  # a finding's keys, plus "servers"
    else:
        for f in findings:
            state = " (fixed)" if f["fixed"] else (" (fixable with --fix)" if f["fixable"] else "")
            console.print(f"[{_STYLE[f['severity']]}]{f['severity']:>7}[/] {f['check']}: {f['message']}{state}")
        _print_fork_servers(servers_entry)
    if any(f["severity"] == "error" for f in findings):
        raise typer.Exit(1)


def _fork_servers_entry() -> dict[str, Any]:
    """The fork servers as one finding-shaped entry (never an error: they only cost memory)."""
    from workbench.kernels.client import ForkServerUnavailable
    from workbench.kernels.servers import idle_seconds, list_servers, max_servers

    entry: dict[str, Any] = {"check": "fork servers", "severity": "ok", "fixable": False, "fixed": False,
                             "servers": []}  # fmt: skip
    try:
        running = list_servers()
        bound, idle = max_servers(), idle_seconds()
    except ForkServerUnavailable as exc:  # an unsafe socket folder or an invalid setting
        return {**entry, "severity": "warning", "message": str(exc)}
    total = sum(s.rss or 0 for s in running)
    entry["servers"] = [s.to_dict() for s in running]
    entry["message"] = (f"{len(running)} running, {_megabytes(total)} resident (at most {bound}; "
                        f"each exits after {_duration(idle)} unused)")  # fmt: skip
    return entry


def _print_fork_servers(entry: dict[str, Any]) -> None:
    severity = entry["severity"]
    hint = " (stop them with --stop-fork-servers)" if entry["servers"] else ""
    console.print(f"[{_STYLE[severity]}]{severity:>7}[/] {entry['check']}: {entry['message']}{hint}", highlight=False)
    if entry["servers"]:
        rows = [_server_row(s) for s in entry["servers"]]
        print_table(None, ["pid", "preloaded modules", "memory", "idle for"], rows)


def _server_row(server: dict[str, Any]) -> list[Any]:
    modules = "(unknown: an older Workbench)" if server["modules"] is None else ", ".join(server["modules"]) or "-"
    idle = None if server["idle_for"] is None else _duration(server["idle_for"])
    return [server["pid"], modules, None if server["rss"] is None else _megabytes(server["rss"]), idle]


def _stop_fork_servers(as_json: bool) -> None:
    from workbench.kernels.servers import stop_all

    stopped = stop_all()
    if as_json:
        print_json({"stopped": [s.to_dict() for s in stopped]})
        return
    if not stopped:
        console.print("No fork servers running.")
    for server in stopped:
        modules = "?" if server.modules is None else ", ".join(server.modules) or "-"
        console.print(f"stopped fork server {server.pid} ({modules})", highlight=False)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
