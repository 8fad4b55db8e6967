"""`workbench explain / fairness / audit / pipeline ... / watch / guard`: governance and automation.

Every command passes `workspace_or_server()`: with a team server configured (and no --home) the
library answers from the server, or refuses what cannot run against one (a pipeline run, watch)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.app import JsonOption, app, console, err_console, fail, print_json, workspace_or_server
from workbench.cli.tables import print_table

pipeline_app = typer.Typer(help="Pipelines declared in workbench.yaml: validate, list, run.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")

FileOption = typer.Option(None, "--file", "-f", help="Pipelines file (default: workbench.yaml here or above).")


@app.command("explain")
def explain_cmd(
    ref: str = typer.Argument(..., help="A run id, or a model NAME[@alias|@version]."),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", "-s", help="Evaluation data (default: training)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Target column (default: target)."),
    repeats: int = typer.Option(5, "--repeats", help="Shuffles per feature."),
    top: int = typer.Option(5, "--top", help="Partial dependence for this many top features."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not store the results with the run."),
    as_json: bool = JsonOption,
) -> None:
    """Permutation importance and partial dependence, stored with the run (and its model card)."""
    from workbench.governance.explain import explain

    result = explain(ref, snapshot, target, n_repeats=repeats, top=top, log=not no_log, ws=workspace_or_server())
    if as_json:
        print_json(result.to_dict())
        return
    rows = [(r.feature, f"{r.importance_mean:.4f}", f"{r.importance_std:.4f}") for r in result.importance.itertuples()]
    print_table(f"Permutation importance of {result.subject} on {result.snapshot}", ["feature", "mean", "std"], rows)
    if not no_log:
        console.print(f"Stored with run {result.run_id}: {', '.join(sorted(result.figures))}, card/explainability.md")


@app.command("fairness")
def fairness_cmd(
    ref: str = typer.Argument(..., help="A run id, or a model NAME[@alias|@version]."),
    sensitive: str = typer.Option(..., "--sensitive", help="Column whose groups to compare (e.g. sex)."),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", "-s", help="Evaluation data (default: training)."),
    target: str = typer.Option("target", "--target", "-t", help="Target column."),
    positive: Optional[str] = typer.Option(
        None, "--positive", help="Class treated as positive (default: most common)."
    ),
    no_log: bool = typer.Option(False, "--no-log", help="Do not store the results with the run."),
    as_json: bool = JsonOption,
) -> None:
    """Selection rate, accuracy, TPR/FPR per group; demographic parity and equalized odds differences."""
    from workbench.governance.fairness import fairness

    report = fairness(ref, sensitive, snapshot, target, positive, log=not no_log, ws=workspace_or_server())
    if as_json:
        print_json(report.to_dict())
        return
    rows = [(g.group, g.count, *(f"{v:.3f}" if v == v else "n/a" for v in (g.selection_rate, g.accuracy, g.tpr, g.fpr)))
            for g in report.groups.itertuples()]  # fmt: skip
    print_table(f"{report.subject} by {sensitive} (positive: {report.positive})",
                ["group", "count", "selection", "accuracy", "tpr", "fpr"], rows)  # fmt: skip
    console.print(f"demographic parity difference {report.demographic_parity_difference:.4f}; "
                  f"equalized odds difference {report.equalized_odds_difference:.4f}")  # fmt: skip


@app.command("audit")
def audit_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only entries about this model."),
    target: Optional[str] = typer.Option(None, "--target", help="Only this target (e.g. wine@2, pipeline:NAME)."),
    action: Optional[str] = typer.Option(None, "--action", "-a", help="Only this action (e.g. alias.moved)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only entries at or after this time (ISO)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Only the most recent N entries."),
    as_json: bool = JsonOption,
) -> None:
    """Who changed what, when and why (oldest first)."""
    from workbench.audit import search

    found = search(model, target, action, since, limit, ws=workspace_or_server(), flag="--")
    if as_json:
        print_json([e.to_dict() for e in found])
        return
    rows = [(e.id, f"{e.occurred_at:%Y-%m-%d %H:%M:%S}", e.actor, e.action, e.target, e.reason or "") for e in found]
    print_table("Audit log", ["id", "when", "who", "action", "target", "why"], rows,
                ids=(0, 4), priority=[0, 1, 3, 4, 2, 5])  # fmt: skip


@pipeline_app.command("validate")
def pipeline_validate_cmd(file: Optional[str] = FileOption, as_json: bool = JsonOption) -> None:
    """Check workbench.yaml; problems are listed with their line and key."""
    from workbench.governance.pipelines import find_file, validate_file

    path = file or str(find_file())
    pipelines = validate_file(path)
    if as_json:
        print_json({"file": path, "pipelines": sorted(pipelines)})
    else:
        names = ", ".join(sorted(pipelines))
        console.print(f"[green]OK[/] {path}: {len(pipelines)} pipeline(s): {names}", soft_wrap=True)  # paths stay whole


@pipeline_app.command("list")
def pipeline_list_cmd(file: Optional[str] = FileOption, as_json: bool = JsonOption) -> None:
    """Declared pipelines, their trigger, steps, promotion target and last run."""
    from workbench.governance.pipelines import list_pipelines

    found = list_pipelines(file, workspace_or_server())
    if as_json:
        print_json(found)
        return
    rows = [(p["name"], p["trigger"] or "", " -> ".join(p["steps"]),
             f"{p['promote']['model'] or '(artifact name)'}@{p['promote']['alias']}" if p["promote"] else "",
             p["last_status"] or "never", p["last_at"] or "") for p in found]  # fmt: skip
    print_table("Pipelines", ["name", "on snapshot", "steps", "promote", "last run", "at"], rows)


def _print_result(result, as_json: bool) -> None:  # noqa: ANN001 (PipelineResult, imported lazily)
    if as_json:
        print_json(result.to_dict())
    elif result.status == "skipped":
        console.print(f"Skipped {result.name}: {result.message}")
    elif result.status == "failed":
        err_console.print(f"[red]Pipeline {result.name} failed[/] ({result.pipeline_run}): {result.message}")
    else:
        console.print(f"[green]Pipeline {result.name} finished[/] ({result.pipeline_run}): {result.message}")


@pipeline_app.command("run")
def pipeline_run_cmd(
    name: str = typer.Argument(..., help="Pipeline name from workbench.yaml."),
    if_changed: bool = typer.Option(False, "--if-changed", help="Only if its trigger fired: a new snapshot "
                                    "version, or a live metric confidently past its threshold."),
    file: Optional[str] = FileOption,
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="Also write a JUnit XML report "
                                         "(a test case per step and for the promotion), whatever the outcome."),
    as_json: bool = JsonOption,
) -> None:
    """Run a pipeline end to end: its steps as tracked runs, then the promotion.

    Exit code 0 when it finished (also when the gates sent the model to the fallback alias) or
    its trigger did not fire, 1 when the run failed (a step, a missing input snapshot), 2 when the
    gates refused the promotion (no fallback alias) or it could not start (bad name or file)."""
    from workbench.errors import WorkbenchError
    from workbench.governance import junit as reports
    from workbench.governance.pipelines import run_pipeline

    if junit:
        reports.check_report_path(junit)
    try:
        result = run_pipeline(name, if_changed, file=file, ws=workspace_or_server())
    except WorkbenchError as exc:
        if junit:
            reports.write_junit(junit, reports.junit_error_report(name, exc))
        raise
    if junit:
        reports.write_junit(junit, reports.junit_report(result))
    _print_result(result, as_json)
    if result.status == "failed":
        raise typer.Exit(2 if result.promotion and result.promotion.status == "refused" else 1)


@app.command("watch")
def watch_cmd(
    interval: float = typer.Option(5.0, "--interval", help="Seconds between checks."),
    once: bool = typer.Option(False, "--once", help="Check once and exit (for cron)."),
    file: Optional[str] = FileOption,
    as_json: bool = JsonOption,
) -> None:
    """Rerun pipelines whose trigger fired: a new snapshot version, or a live metric past its threshold."""
    from workbench.governance.triggers import watch

    if interval <= 0:
        fail(f"--interval must be positive, got {interval}.")
    if not once:
        console.print(f"Watching pipeline triggers every {interval:g}s; Ctrl+C stops.")
    results = watch(interval, once, file=file, ws=workspace_or_server(),
                    on_result=None if once else (lambda r: _print_result(r, as_json)),
                    on_error=lambda exc: err_console.print(f"[red]Error:[/] {exc.message}"))  # fmt: skip
    if once:
        if as_json:
            print_json([r.to_dict() for r in results])
        else:
            for result in results:
                _print_result(result, False)
            if not results:
                console.print("No trigger fired.")


@app.command("guard")
def guard_cmd(
    ref: str = typer.Argument(..., help="NAME@ALIAS to serve and guard."),
    max_error_rate: Optional[float] = typer.Option(0.05, "--max-error-rate", help="Roll back above this 5xx rate."),
    max_p99_ms: Optional[float] = typer.Option(None, "--max-p99-ms", help="Roll back above this p99 latency."),
    max_drift_psi: Optional[float] = typer.Option(
        None, "--max-drift-psi", help="Roll back when an input's PSI exceeds this."
    ),
    window: int = typer.Option(200, "--window", help="Judge the last N requests of the current version."),
    min_requests: int = typer.Option(20, "--min-requests", help="Do not judge on fewer requests."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", "-p"),
    token_file: Optional[Path] = typer.Option(
        None, "--token-file", metavar="PATH", help="Require the token in PATH (chmod 600), as `serve` does; "
        "default: WORKBENCH_SERVE_TOKEN."
    ),  # fmt: skip
    canary: Optional[str] = typer.Option(None, "--canary", metavar="VERSION=FRACTION",
                                         help="Also serve a canary (as `serve`); stopped when significantly worse."),
    ab_metric: Optional[str] = typer.Option(None, "--ab-metric", help="Also judge live outcomes on this metric "
                                            "(accuracy, error_rate, f1, log_loss, mae, rmse): roll back the version, "
                                            "or stop the canary, when significantly worse."),
    ab_alpha: float = typer.Option(0.001, "--ab-alpha", help="Significance for --ab-metric (strict: checked often)."),
    ab_min_outcomes: int = typer.Option(30, "--ab-min-outcomes", help="Outcomes per version before judging."),
) -> None:  # fmt: skip
    """Serve NAME@ALIAS and roll the alias back automatically when the current version misbehaves."""
    from workbench.governance.autorollback import GuardPolicy, serve_guarded
    from workbench.serving.server import resolve_token

    token = resolve_token(None, token_file)
    policy = GuardPolicy(max_error_rate, max_p99_ms, max_drift_psi, min_requests, ab_metric, ab_alpha, ab_min_outcomes)
    console.print(f"Serving {ref} on http://{host}:{port} with a guard (window {window}); Ctrl+C stops.")
    serve_guarded(ref, policy, window=window, host=host, port=port, token=token, ws=workspace_or_server(),
                  on_decision=lambda d: err_console.print(f"[yellow]Guard:[/] {d.summary}"), canary=canary)  # fmt: skip
