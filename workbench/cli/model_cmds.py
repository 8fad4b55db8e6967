"""`workbench promote / rollback / models ... / serve / monitor`: the registry and serving."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from workbench.cli.app import JsonOption, app, console, err_console, fail, print_json, workspace, workspace_or_server
from workbench.cli.tables import print_table

models_app = typer.Typer(help="Registered models, versions, aliases, gates and model cards.", no_args_is_help=True)
app.add_typer(models_app, name="models")

ReasonOption = typer.Option(None, "--reason", "-r", help="Why (recorded in the audit log).")


@app.command("promote")
def promote_cmd(
    run_id: str = typer.Argument(..., help="The finished run whose model to promote."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name (default: the artifact's name)."),
    alias: str = typer.Option("production", "--alias", "-a", help="Alias to move to the new version."),
    artifact: Optional[str] = typer.Option(None, "--artifact", help="Which model artifact, if the run logged several."),
    reason: Optional[str] = ReasonOption,
    force: bool = typer.Option(False, "--force", help="Skip the model's gates (audited)."),
    as_json: bool = JsonOption,
) -> None:
    """Register RUN_ID's model as the next version and move ALIAS to it (gates permitting)."""
    from workbench.models.registry import promote

    version = promote(run_id, model, alias=alias, reason=reason, artifact=artifact, force=force,
                      ws=workspace_or_server())  # fmt: skip
    if as_json:
        print_json(version.to_dict())
    else:
        console.print(f"[green]Promoted[/] run {run_id} -> [bold]{version.ref}[/] ({alias})")


@app.command("rollback")
def rollback_cmd(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Option("production", "--alias", "-a"),
    to: Optional[int] = typer.Option(None, "--to", help="Version to move the alias to (default: the previous one)."),
    reason: Optional[str] = ReasonOption,
    as_json: bool = JsonOption,
) -> None:
    """Move ALIAS of NAME back to the version it pointed at before (or --to VERSION)."""
    from workbench.models.registry import rollback

    version = rollback(name, alias, to=to, reason=reason, ws=workspace_or_server())
    if as_json:
        print_json(version.to_dict())
    else:
        console.print(f"[yellow]Rolled back[/] {name}@{alias} -> [bold]{version.ref}[/]")


@models_app.command("list")
def list_cmd(as_json: bool = JsonOption) -> None:
    """Every model with its latest version and aliases."""
    from workbench.models.registry import list_models

    found = list_models(workspace_or_server())
    if as_json:
        print_json(found)
        return
    rows = [(m["name"], m["latest_version"], ", ".join(f"{a}={v}" for a, v in m["aliases"].items()),
             "yes" if m["gates"] else "", m["description"]) for m in found]  # fmt: skip
    print_table("Models", ["name", "latest", "aliases", "gates", "description"], rows, ids=(0, 1))


@models_app.command("show")
def show_cmd(name: str = typer.Argument(..., help="Model name."), as_json: bool = JsonOption) -> None:
    """Versions (newest first) with their runs and metrics, aliases and alias history."""
    from workbench.models.registry import get_model

    model = get_model(name, workspace_or_server())
    if as_json:
        print_json(model)
        return
    rows = []
    for v in model["versions"]:
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v["metrics"].items()) if isinstance(val, float))
        rows.append((v["version"], ", ".join(v["aliases"]), v["run_id"], ", ".join(v["inputs"]), metrics,
                     v["created_at"][:16], v["creator"]))  # fmt: skip
    print_table(f"Model {name}", ["version", "aliases", "run", "data", "metrics", "created", "by"], rows,
                ids=(0, 2), priority=[0, 2, 1, 4, 3, 5, 6])  # fmt: skip


@models_app.command("card")
def card_cmd(
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME@ALIAS."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a standalone HTML card here."),
) -> None:
    """Print the model card (Markdown), or write it as HTML."""
    from workbench.models.card import model_card

    if html:
        html.write_text(model_card(ref, "html", workspace_or_server()))
        console.print(f"Wrote {html}")
    else:
        typer.echo(model_card(ref, "markdown", workspace_or_server()))


@models_app.command("alias")
def alias_cmd(
    name: str = typer.Argument(...), alias: str = typer.Argument(...), version: int = typer.Argument(...),
    reason: Optional[str] = ReasonOption,
) -> None:  # fmt: skip
    """Point ALIAS of NAME at VERSION (e.g. staging)."""
    from workbench.models.registry import set_alias

    console.print(f"{name}@{alias} -> {set_alias(name, alias, version, reason=reason, ws=workspace_or_server()).ref}")


@models_app.command("gate")
def gate_cmd(
    name: str = typer.Argument(..., help="Model name."),
    minimum: Optional[list[str]] = typer.Option(None, "--min", metavar="METRIC=VALUE", help="Metric must be >= VALUE."),
    maximum: Optional[list[str]] = typer.Option(None, "--max", metavar="METRIC=VALUE", help="Metric must be <= VALUE."),
    beat: Optional[str] = typer.Option(None, "--beat", metavar="METRIC", help="Must beat the alias holder on METRIC."),
    higher_is_better: bool = typer.Option(False, "--higher-is-better", help="For --beat (default: lower wins)."),
    clear: bool = typer.Option(False, "--clear", help="Remove all gates."),
    as_json: bool = JsonOption,
) -> None:
    """Set the promotion gates of NAME (replaces the current ones)."""
    from workbench.cli.run_cmds import split_pairs
    from workbench.models.registry import set_gates

    gates: dict = {}
    bounds: dict[str, dict[str, float]] = {}
    for bound, pairs in (("min", minimum), ("max", maximum)):
        for metric, value in split_pairs(pairs, f"--{bound}").items():
            try:
                bounds.setdefault(metric, {})[bound] = float(value)
            except ValueError:
                fail(f"--{bound} {metric}={value}: not a number.")
    if bounds:
        gates["metrics"] = bounds
    if beat:
        gates["beat"] = {"metric": beat, "mode": "max" if higher_is_better else "min"}
    if not gates and not clear:
        fail("No gate given.", "Use --min METRIC=V, --max METRIC=V, --beat METRIC, or --clear.")
    result = set_gates(name, None if clear else gates, ws=workspace_or_server())
    if as_json:
        print_json(result)
    else:
        console.print(f"Gates of {name}: {result or 'none'}")


TokenOption = typer.Option(
    None, "--token", help="Require 'Authorization: Bearer TOKEN'; visible in the process list: prefer "
    "WORKBENCH_SERVE_TOKEN or --token-file."
)  # fmt: skip
TokenFileOption = typer.Option(
    None, "--token-file", metavar="PATH", help="Read the token from PATH (only you may read it: chmod 600)."
)  # fmt: skip


def serving_token(token: str | None, token_file: Path | None) -> str | None:
    """The token from --token (with a warning: other local users see it in `ps`), --token-file or the environment."""
    from workbench.serving.server import TOKEN_ARGUMENT_WARNING, resolve_token

    if token:
        err_console.print(f"[yellow]{TOKEN_ARGUMENT_WARNING}[/]", highlight=False, soft_wrap=True)
    return resolve_token(token, token_file)


@app.command("serve")
def serve_cmd(
    ref: str = typer.Argument(..., help="NAME[@alias|@version]; an alias is followed (hot swap)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: loopback only)."),
    port: int = typer.Option(8000, "--port", "-p"),
    canary: Optional[str] = typer.Option(
        None, "--canary", metavar="VERSION=FRACTION", help="Send a fraction of requests to another version."
    ),  # fmt: skip
    token: Optional[str] = TokenOption,
    token_file: Optional[Path] = TokenFileOption,
    docs: bool = typer.Option(False, "--docs", help="Serve /docs and /openapi.json (behind the token, if any)."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not log predictions."),
) -> None:
    """Serve a registered model over HTTP: POST /predict, GET /health, /metadata, /metrics.

    With a team server configured (WORKBENCH_URL, 'workbench login') the model is pulled from it,
    alias moves are followed through its change feed and predictions are shipped to it."""
    from workbench.serving.server import build_server, serve_forever
    from workbench.serving.sources import model_source

    server = build_server(ref, host=host, port=port, canary=canary, token=serving_token(token, token_file),
                          log_predictions=not no_log, docs=docs, source=model_source(workspace))  # fmt: skip
    current = server.slot.current.version
    console.print(f"Serving [bold]{current.ref}[/] ({ref}) from {server.source.describe()} on {server.url} — "
                  f"POST {server.url}/predict; Ctrl+C stops.")  # fmt: skip
    serve_forever(server)


@app.command("monitor")
def monitor_cmd(
    ref: str = typer.Argument(..., help="NAME (all versions) or NAME@VERSION."),
    since: Optional[str] = typer.Option(None, "--since", help="Only predictions at or after this time (ISO)."),
    threshold: float = typer.Option(0.2, "--threshold", help="PSI above which a column counts as drifted."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a plotly report here."),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit 1 when any column drifted (for CI)."),
    as_json: bool = JsonOption,
) -> None:
    """Drift of the served model's live inputs and predictions vs its training snapshot.

    With a team server configured it is computed there, over the predictions every model server shipped."""
    from workbench.serving.monitor import drift_report

    report = drift_report(ref, since=since, threshold=threshold, ws=workspace_or_server())
    if html:
        report.to_html(str(html))
    if as_json:
        print_json(report.to_dict())
    else:
        rows = [(r.column, r.kind, f"{r.psi:.4f}", "" if r.ks != r.ks else f"{r.ks:.3f}",
                 "" if r.p_value != r.p_value else f"{r.p_value:.3g}", Text("DRIFT", style="red") if r.drift else "ok")
                for r in report.table.itertuples()]  # fmt: skip
        print_table(f"Drift of {report.model} vs {report.reference} ({report.live_rows} live rows)",
                    ["column", "kind", "psi", "ks", "p", "status"], rows)  # fmt: skip
        if html:
            console.print(f"Report: {html}")
    if fail_on_drift and report.drifted:
        raise typer.Exit(1)
