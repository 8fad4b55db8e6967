"""`workbench server` (the team server) and `workbench server user add / list / revoke`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from workbench.cli.app import JsonOption, app, console, err_console, print_json, workspace
from workbench.cli.tables import print_table
from workbench.workspace import ENV_HOME

server_app = typer.Typer(invoke_without_command=True)  # its help: server_cmd's docstring
user_app = typer.Typer(help="Users of the team server and their tokens (stored only hashed).", no_args_is_help=True)
server_app.add_typer(user_app, name="user")
app.add_typer(server_app, name="server")

HomeOption = typer.Option(None, "--home", help="Workspace folder (default: $WORKBENCH_HOME or nearest .workbench/).")


def _use_home(home: str | None) -> None:
    if home:
        os.environ[ENV_HOME] = os.path.abspath(os.path.expanduser(home))


@server_app.callback(invoke_without_command=True)
def server_cmd(
    ctx: typer.Context,
    home: Optional[str] = HomeOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: loopback only)."),
    port: int = typer.Option(8686, "--port", "-p", help="Port to listen on."),
    certfile: Optional[Path] = typer.Option(None, "--certfile", help="Serve HTTPS with this certificate (PEM)."),
    keyfile: Optional[Path] = typer.Option(None, "--keyfile", help="The certificate's private key (PEM)."),
    protect_alias: Optional[list[str]] = typer.Option(
        None,
        "--protect-alias",
        metavar="ALIAS",
        help="Only maintainers may move ALIAS (repeatable; default: the "
        "workspace setting protected_aliases, else production).",
    ),
) -> None:
    """Serve the workspace's runs, snapshots, models and audit log to a team over HTTP (/api/v1; Ctrl+C stops).

    Every request but /health needs a user's token (see `workbench server user`); what it may do depends on the
    user's role. The server keeps the catalog open: while it runs, other processes use the workspace through it.
    """
    _use_home(home)
    if ctx.invoked_subcommand is not None:
        return
    from workbench.server.serve import ServerConfig, serve
    from workbench.server.users import list_users

    config = ServerConfig(host, port, certfile, keyfile, tuple(protect_alias or ())).check()
    ws = workspace()

    def ready(url: str, protected: object) -> None:
        console.print(f"Workbench team server for {ws.root} on {url} — API {url}/api/v1 (docs: /api/v1/docs); "
                      f"protected aliases: {', '.join(protected)}. Ctrl+C stops.", soft_wrap=True)  # fmt: skip
        if not config.tls and host not in ("127.0.0.1", "localhost", "::1"):
            err_console.print("[yellow]Warning:[/] tokens travel in clear text on this network: serve HTTPS with "
                              "--certfile/--keyfile, or behind a reverse proxy that does.", soft_wrap=True)  # fmt: skip
        if not any(u.active for u in list_users(ws)):
            err_console.print("[yellow]No users yet:[/] stop the server and add one with "
                              "'workbench server user add NAME --role admin'.", soft_wrap=True)  # fmt: skip

    serve(ws, config, on_ready=ready)


@user_app.command("add")
def user_add_cmd(
    name: str = typer.Argument(..., help="User name (letters, digits, '_', '-', '.')."),
    role: str = typer.Option(..., "--role", "-r", help="viewer, editor, maintainer or admin."),
    home: Optional[str] = HomeOption,
    as_json: bool = JsonOption,
) -> None:
    """Add a user and print their token, once (only its hash is stored).

    Run it while the server is stopped; while it runs, an admin adds users with POST /api/v1/users.
    """
    from workbench.server.users import add_user

    _use_home(home)
    user, token = add_user(name, role, workspace())
    if as_json:
        print_json({**user.to_dict(), "token": token})
        return
    err_console.print(f"Added user {user.name} ({user.role}). Their token, shown only this once:", highlight=False)
    typer.echo(token)  # alone on stdout: `... > ann.token` keeps just the token


@user_app.command("list")
def user_list_cmd(home: Optional[str] = HomeOption, as_json: bool = JsonOption) -> None:
    """Users with their role, when and by whom they were added, and whether they are revoked."""
    from workbench.server.users import list_users

    _use_home(home)
    found = list_users(workspace())
    if as_json:
        print_json([u.to_dict() for u in found])
        return
    rows = [(u.name, u.role, f"{u.created_at:%Y-%m-%d %H:%M}", u.created_by,
             f"{u.revoked_at:%Y-%m-%d %H:%M}" if u.revoked_at else "") for u in found]  # fmt: skip
    print_table("Team server users", ["name", "role", "created", "by", "revoked"], rows)


@user_app.command("revoke")
def user_revoke_cmd(
    name: str = typer.Argument(..., help="User whose token stops working."), home: Optional[str] = HomeOption
) -> None:
    """Revoke a user's token; `user add` gives them a new one later.

    Run it while the server is stopped; while it runs, an admin revokes with DELETE /api/v1/users/NAME.
    """
    from workbench.server.users import revoke_user

    _use_home(home)
    user = revoke_user(name, workspace())
    console.print(f"Revoked {user.name} ({user.role}): their token no longer works.")


@server_app.command("backup")
def backup_cmd(
    dest: Optional[str] = typer.Argument(
        None,
        help="With a server: the name of a new folder in the server's backup folder (default: backup-<UTC time>). "
        "With --home: a new or empty folder.",
    ),
    home: Optional[str] = typer.Option(
        None, "--home", help="Back up this workspace folder directly (no server may be running on it)."
    ),
    url: Optional[str] = typer.Option(
        None, "--url", help="The server to back up (default: WORKBENCH_URL or the last 'workbench login')."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Back up a workspace while it is in use: the catalog at one point in time, then its files and blobs.

    Against a running server (needs role admin) the server writes the backup on its own machine, into a new
    folder of its backup folder (workspace setting backup_dir, else <workspace>-backups beside the workspace).
    With --home, this process backs up the folder itself, while no server holds it.
    """
    from workbench.backup import backup

    remote = None
    if home is None:
        from workbench.remote.config import remote_for, resolve

        remote = remote_for(url) if url else resolve()
    if remote is None:
        if not dest:
            raise typer.BadParameter("give the destination folder (DEST) when backing up a folder.")
        _use_home(home)
        result = backup(workspace(), dest)
    else:
        from workbench.remote.client import Client

        with Client(remote, timeout=24 * 3600.0, retries=0) as client:
            result = client.request("POST", "/backup", json={"name": dest} if dest else {}).json()
    if as_json:
        print_json(result)
        return
    console.print(f"Backed up to {result['path']}: the catalog as of {result['at']} (audit entry "
                  f"{result['audit_id']}), {result['runs']} run(s), {result['blobs']} blob(s).",
                  highlight=False, soft_wrap=True)  # fmt: skip
    if result.get("damaged"):
        left_out = result["damaged"]
        err_console.print(f"[yellow]Left out {len(left_out)} blob(s) missing or damaged in the workspace:[/] "
                          f"{', '.join(left_out[:10])}. Run 'workbench doctor' on it.", soft_wrap=True)  # fmt: skip
