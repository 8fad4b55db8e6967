"""`workbench login / logout / whoami / sync`: pointing this machine at a team server."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional

import typer

from workbench.cli.app import JsonOption, app, console, err_console, print_json

if TYPE_CHECKING:
    from workbench.remote.spool_cleaning import SpoolCleaning

CONNECT_HINT = "Log in with 'workbench login URL', or set WORKBENCH_URL and WORKBENCH_TOKEN."


@app.command("login")
def login_cmd(
    url: str = typer.Argument(
        ..., help="The team server, e.g. https://workbench.example.org or http://localhost:8686."
    ),
    token_stdin: bool = typer.Option(False, "--token-stdin", help="Read the token from stdin instead of a prompt."),
) -> None:
    """Save a token for a team server (checked with the server first) and log runs to it from now on.

    The token is read from a hidden prompt (or stdin) and saved in $XDG_CONFIG_HOME/workbench/credentials.json
    (mode 0600); a token the server refuses is not saved.
    """
    from workbench.errors import ValidationError
    from workbench.remote.client import Client
    from workbench.remote.config import Remote, normalize_url, remember, verify_option

    url = normalize_url(url)
    token = sys.stdin.readline().strip() if token_stdin else typer.prompt("Token", hide_input=True).strip()
    if not token:
        raise ValidationError("No token given.", "An admin of the server creates one with 'workbench server user add'.")
    with Client(Remote(url, token, verify_option(), "workbench login")) as client:
        me = client.me()
    path = remember(url, token, me["name"], me["role"])
    console.print(f"Logged in to {url} as {me['name']} ({me['role']}); token saved in {path}.",
                  highlight=False, soft_wrap=True)  # fmt: skip


@app.command("logout")
def logout_cmd(
    url: Optional[str] = typer.Argument(None, help="The server to forget (default: the one logged in to last)."),
) -> None:
    """Delete the token saved for a team server."""
    from workbench.remote.config import forget

    removed = forget(url)
    if removed is None:
        err_console.print(f"No token saved for {url or 'any server'}.", highlight=False)
        return
    console.print(f"Logged out of {removed}.", highlight=False)


@app.command("whoami")
def whoami_cmd(as_json: bool = JsonOption) -> None:
    """The team server this machine logs to, and the user and role its token has there."""
    from workbench.errors import ValidationError
    from workbench.remote.client import Client
    from workbench.remote.config import resolve

    remote = resolve()
    if remote is None:
        raise ValidationError("Not connected to a team server: runs are logged to the local workspace.", CONNECT_HINT)
    with Client(remote) as client:
        me = client.me()
    if as_json:
        print_json({"name": me["name"], "role": me["role"], "server": remote.url, "source": remote.source})
        return
    console.print(f"{me['name']} ({me['role']}) on {remote.url} (from {remote.source})", highlight=False)


@app.command("sync")
def sync_cmd(
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for the server to have everything."),
    clean: bool = typer.Option(False, "--clean", help="Then remove every synced run nothing writes to any more."),
    as_json: bool = JsonOption,
) -> None:
    """Send the runs left in the local spool to the team server, and show where each stands.

    Synced runs are removed from the spool automatically $WORKBENCH_SPOOL_KEEP_HOURS (24) hours after
    their last event; --clean removes them now and says what it freed."""
    from workbench.cli.tables import print_table
    from workbench.errors import WorkbenchError
    from workbench.remote.config import resolve
    from workbench.remote.sender import sender_for, spool_workspace, sync_state
    from workbench.remote.spool_cleaning import clean_spool

    remote = resolve()
    if remote is None:
        raise WorkbenchError("Not connected to a team server: nothing to sync.", CONNECT_HINT)
    done = sender_for(remote).flush(timeout)
    cleaning = clean_spool(spool_workspace(remote)) if clean else None
    states = sync_state()
    if as_json:
        print_json({"runs": states, "cleaned": cleaning.to_dict()} if cleaning else states)
    else:
        print_table(f"Runs spooled for {remote.url}", ["run", "state", "sent", "bytes", "error"],
                    [(s["run_id"], s["state"], f"{s['sent_bytes']:,}", f"{s['bytes']:,}", s["error"] or "")
                     for s in states])  # fmt: skip
        if cleaning:
            console.print(_cleaned_text(cleaning), highlight=False, soft_wrap=True)
    if not done:
        raise WorkbenchError(f"The server {remote.url} does not have everything yet.",
                             "Run 'workbench sync' again later: the spool keeps what is left.")  # fmt: skip


def _cleaned_text(cleaning: SpoolCleaning) -> str:
    """`Removed 2 synced runs and 1 blob from SPOOL (1.2 MB freed); kept 1 run (1 active).`"""
    from workbench.cli.snapshot_cmds import _human_bytes

    runs, blobs = len(cleaning.removed), cleaning.blobs
    text = (f"Removed {runs} synced run{'s' * (runs != 1)} and {blobs} blob{'s' * (blobs != 1)} from "
            f"{cleaning.spool} ({_human_bytes(cleaning.freed_bytes)} freed)")  # fmt: skip
    kept = sum(cleaning.kept.values())
    if kept:
        why = ", ".join(f"{count} {reason}" for reason, count in sorted(cleaning.kept.items()))
        text += f"; kept {kept} run{'s' * (kept != 1)} ({why})"
    return text + "."
