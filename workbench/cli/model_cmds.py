"""`workbench promote / rollback / models ... / serve / monitor`: the registry and serving."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Optional

import typer
from rich.text import Text
from typer.core import TyperCommand

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
    force: bool = typer.Option(False, "--force", help="Move it even if the live gate refuses (audited)."),
) -> None:  # fmt: skip
    """Point ALIAS of NAME at VERSION (e.g. staging); a live gate on ALIAS is judged first."""
    from workbench.models.registry import set_alias

    moved = set_alias(name, alias, version, reason=reason, force=force, ws=workspace_or_server())
    console.print(f"{name}@{alias} -> {moved.ref}")


@models_app.command("gate")
def gate_cmd(
    name: str = typer.Argument(..., help="Model name."),
    minimum: Optional[list[str]] = typer.Option(None, "--min", metavar="METRIC=VALUE", help="Metric must be >= VALUE."),
    maximum: Optional[list[str]] = typer.Option(None, "--max", metavar="METRIC=VALUE", help="Metric must be <= VALUE."),
    beat: Optional[str] = typer.Option(None, "--beat", metavar="METRIC", help="Must beat the alias holder on METRIC."),
    higher_is_better: bool = typer.Option(False, "--higher-is-better", help="For --beat (default: lower wins)."),
    live: Optional[str] = typer.Option(None, "--live", metavar="METRIC", help="The version moved to must beat the "
                                       "alias holder on METRIC in live outcomes (A/B test, see docs/monitoring.md)."),
    live_alias: str = typer.Option("production", "--live-alias", help="For --live: the alias it guards."),
    live_alpha: float = typer.Option(0.05, "--live-alpha", help="For --live: the significance level."),
    live_min_outcomes: int = typer.Option(30, "--live-min-outcomes", help="For --live: outcomes each version needs."),
    live_min_effect: Optional[float] = typer.Option(None, "--live-min-effect", help="For --live: also wait until "
                                                    "the outcomes suffice to detect this difference."),
    live_since: str = typer.Option("7d", "--live-since", help="For --live: outcomes of this period (e.g. 7d)."),
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
    if live:
        gates["live"] = {"metric": live, "alias": live_alias, "alpha": live_alpha, "min_outcomes": live_min_outcomes,
                         "min_effect": live_min_effect, "since": live_since}  # fmt: skip
    if not gates and not clear:
        fail("No gate given.", "Use --min METRIC=V, --max METRIC=V, --beat METRIC, --live METRIC, or --clear.")
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

ShadowOption = typer.Option(
    None, "--shadow", metavar="VERSION", help="Also predict every request with VERSION, off the response path, "
    "and log its predictions as shadow lines (answers never change)."
)  # fmt: skip
LogProbaOption = typer.Option(
    True, "--log-proba/--no-log-proba", help="Log a classifier's class probabilities with each prediction "
    "(live log loss needs them; computed off the response path)."
)  # fmt: skip


def serving_token(token: str | None, token_file: Path | None) -> str | None:
    """The token from --token (with a warning: other local users see it in `ps`), --token-file or the environment."""
    from workbench.serving.server import TOKEN_ARGUMENT_WARNING, resolve_token

    if token:
        err_console.print(f"[yellow]{TOKEN_ARGUMENT_WARNING}[/]", highlight=False, soft_wrap=True)
    return resolve_token(token, token_file)


@app.command("serve")
def serve_cmd(
    ref: Optional[str] = typer.Argument(None, help="NAME[@alias|@version]; an alias is followed (hot swap)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: loopback only)."),
    port: int = typer.Option(8000, "--port", "-p"),
    canary: Optional[str] = typer.Option(
        None, "--canary", metavar="VERSION=FRACTION", help="Send a fraction of requests to another version."
    ),  # fmt: skip
    token: Optional[str] = TokenOption,
    token_file: Optional[Path] = TokenFileOption,
    docs: bool = typer.Option(False, "--docs", help="Serve /docs and /openapi.json (behind the token, if any)."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not log predictions."),
    shadow: Optional[int] = ShadowOption,
    log_proba: bool = LogProbaOption,
    bundle: Optional[Path] = typer.Option(
        None, "--bundle", metavar="DIR", help="Serve the model bundle in DIR (written by 'workbench export docker'): "
        "no workspace needed; its logs go to $XDG_CACHE_HOME/workbench/bundles/."),
) -> None:
    """Serve a registered model over HTTP: POST /predict, POST /feedback, GET /health, /metadata, /metrics.

    A caller that sends 'X-Workbench-Key: KEY' always gets the same version of a --canary split.
    With a team server configured (WORKBENCH_URL, 'workbench login') the model is pulled from it,
    alias moves are followed through its change feed and predictions are shipped to it.
    With --bundle the one version in that folder is served, without a workspace (containers)."""
    from workbench.serving.server import build_server, serve_forever
    from workbench.serving.sources import ModelSource, model_source

    source: ModelSource
    if bundle is not None:
        from workbench.serving.bundle import BundleSource

        bundled = BundleSource(bundle)
        source, ref = bundled, ref or bundled.ref
    elif ref is None:
        return fail("Name the model to serve: workbench serve NAME, NAME@ALIAS or NAME@VERSION.",
                    "Or serve the model bundle in a folder: --bundle DIR.")  # fmt: skip
    else:
        source = model_source(workspace)
    server = build_server(ref, host=host, port=port, canary=canary, token=serving_token(token, token_file),
                          log_predictions=not no_log, docs=docs, source=source, shadow=shadow,
                          log_proba=log_proba)  # fmt: skip
    current = server.slot.current.version
    shadowed = f", shadowed by version {server.shadow.version}" if server.shadow else ""
    console.print(f"Serving [bold]{current.ref}[/] ({ref}){shadowed} from {server.source.describe()} on "
                  f"{server.url} — POST {server.url}/predict; Ctrl+C stops.")  # fmt: skip
    serve_forever(server)


class MonitorCommand(TyperCommand):
    """`workbench monitor NAME` with one sub-command, `workbench monitor outcomes NAME ...`, chosen by its
    first word: a click group would take NAME for a sub-command's name. (Drift of a model named
    `outcomes`: `workbench monitor outcomes`, or with options `workbench monitor --since ... -- outcomes`.)"""

    invoke_without_command = True  # for the CLI reference: this command's options, then its sub-command

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epilog = self.epilog or ("Outcomes (true labels) of served predictions: workbench monitor outcomes "
                                      "NAME --from FILE|SNAPSHOT (see its --help).")  # fmt: skip

    @property
    def commands(self) -> dict[str, Any]:
        return {"outcomes": _outcomes_command()}

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        if len(args) > 1 and args[0] == "outcomes":
            return _outcomes_command().make_context(f"{info_name} outcomes", args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@app.command("monitor", cls=MonitorCommand)
def monitor_cmd(
    ref: str = typer.Argument(..., help="NAME (all versions) or NAME@VERSION."),
    since: Optional[str] = typer.Option(None, "--since", help="From this ISO time or this long back (7d, 12h); "
                                        "default: every prediction for drift, the last 7d for live quality."),
    window: str = typer.Option("1h", "--window", help="Live quality per window of this length (15m, 1h, 1d)."),
    threshold: float = typer.Option(0.2, "--threshold", help="PSI above which a column counts as drifted."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a plotly report here."),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit 1 when any column drifted (for CI)."),
    as_json: bool = JsonOption,
) -> None:  # fmt: skip
    """Drift of the served model's live inputs and predictions vs its training snapshot, then its live
    quality per version and --window: traffic, latency, metrics from reported outcomes, prediction drift.

    With a team server configured both are computed there, over every model server's shipped logs."""
    from workbench.quality.metrics import parse_since, parse_span
    from workbench.serving.monitor import drift_report

    parse_span(window, "--window")
    start = parse_since(since)
    ws = workspace_or_server()
    report = drift_report(ref, since=start.isoformat() if start else None, threshold=threshold, ws=ws)
    live = _live_quality(ref, window, since, ws)
    if html:
        from workbench.quality.live import append_to_html

        report.to_html(str(html))
        append_to_html(live, html)
    if as_json:
        print_json({**report.to_dict(), "live": live.to_dict()})
    else:
        rows = [(r.column, r.kind, f"{r.psi:.4f}", "" if r.ks != r.ks else f"{r.ks:.3f}",
                 "" if r.p_value != r.p_value else f"{r.p_value:.3g}", Text("DRIFT", style="red") if r.drift else "ok")
                for r in report.table.itertuples()]  # fmt: skip
        print_table(f"Drift of {report.model} vs {report.reference} ({report.live_rows} live rows)",
                    ["column", "kind", "psi", "ks", "p", "status"], rows)  # fmt: skip
        _print_live_quality(live)
        if html:
            console.print(f"Report: {html}")
    if fail_on_drift and report.drifted:
        raise typer.Exit(1)


def _live_quality(ref: str, window: str, since: Optional[str], ws: Any) -> Any:
    """`monitor`'s live quality of the model REF names (only its version's rows when REF pins one);
    `ws` None: computed by the team server."""
    import dataclasses

    from workbench.quality.live import live_quality

    name, _, version = ref.partition("@")
    live = live_quality(name, window=window, since=since or "7d", ws=ws)
    if version.isdigit():
        live = dataclasses.replace(live, table=live.table[live.table["version"] == int(version)].reset_index(drop=True))
    return live


def _print_live_quality(live: Any) -> None:
    """The live-quality table (TSV when piped, like every table), then the join's counts on stderr."""
    from workbench.quality.live import display_rows

    headers, rows = display_rows(live)
    since = f" since {live.since:%Y-%m-%d %H:%M} UTC" if live.since is not None else ""
    print_table(f"Live quality of {live.model} per {live.window}{since} ({live.task})", headers, rows, ids=(0, 1))
    counts = live.counts
    err_console.print(f"Outcomes of {live.model} (every version): {counts.get('matched', 0):,} matched, "
                      f"{counts.get('pending', 0):,} pending, {counts.get('duplicates', 0):,} duplicate, "
                      f"{counts.get('unknown', 0):,} unknown.{'' if live.errors_logged else ERRORS_NOT_LOGGED}",
                      highlight=False)  # fmt: skip


ERRORS_NOT_LOGGED = (" errors n/a: these logs are from a model server that did not log failed requests (see its "
                     "/metrics, workbench_errors_total).")  # fmt: skip


outcomes_app = typer.Typer(add_completion=False)


@cache
def _outcomes_command() -> Any:
    return typer.main.get_command(outcomes_app)


@outcomes_app.command()
def outcomes_cmd(
    name: str = typer.Argument(..., help="Model name."),
    source: Optional[str] = typer.Option(
        None,
        "--from",
        metavar="FILE|SNAPSHOT",
        help="CSV/Parquet file or snapshot NAME@VERSION with the outcomes to record (without it: only the counts).",
    ),
    id_column: str = typer.Option("request_id", "--id-column", help="Column of the request_id the server answered."),
    outcome_column: str = typer.Option("outcome", "--outcome-column", help="Column of the true label or value."),
    row_column: Optional[str] = typer.Option(
        None, "--row-column", help="Column of the row within the request (default: row 0, a one-row request)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Record outcomes (true labels) of a model's served predictions, joined to its prediction log by request id.

    Every row is checked before any is written. An outcome for an id that has one already is kept but
    not counted again (the first counts); one whose prediction is not logged yet is matched once it is.
    Then the counts: outcomes, matched and pending predictions, unknown ids, duplicates."""
    from workbench.api import log_outcomes
    from workbench.quality.outcomes import outcome_counts

    ws = workspace_or_server()  # None: recorded on and counted by the team server
    recorded = log_outcomes(name, source, id_column, outcome_column, row_column, ws=ws) if source else None
    counts = outcome_counts(name, ws=ws)
    if as_json:
        print_json({"model": name, "recorded": recorded, "counts": counts})
        return
    if recorded:
        console.print(f"Recorded {recorded['recorded']:,} outcomes of [bold]{name}[/] from {recorded['source']}: "
                      f"{recorded['duplicates']:,} duplicates of earlier ones (kept, not counted again), "
                      f"{recorded['unknown']:,} for predictions not logged yet (matched once they are).")  # fmt: skip
    columns = ["outcomes", "matched", "pending", "unknown", "duplicates"]
    print_table(f"Outcomes of {name}", columns, [tuple(f"{counts[c]:,}" for c in columns)])
