"""`workbench import mlflow`: bring another tool's history into the workspace."""

from __future__ import annotations

from typing import Optional

import typer

from workbench.cli.app import JsonOption, app, console, print_json, workspace
from workbench.cli.tables import print_table

import_app = typer.Typer(help="Bring history recorded by other tools into the workspace.", no_args_is_help=True)
app.add_typer(import_app, name="import")  # `import` is a Python keyword: the module is import_cmds


@import_app.command("mlflow")
def mlflow_cmd(
    tracking_uri: Optional[str] = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow store: a server URL, sqlite:///path/mlflow.db or a ./mlruns folder "
        "(default: MLflow's own, e.g. $MLFLOW_TRACKING_URI).",
    ),  # fmt: skip
    experiment: Optional[list[str]] = typer.Option(
        None, "--experiment", "-e", help="Only this MLflow experiment (repeat for several; default: all)."
    ),
    trust_models: bool = typer.Option(
        False,
        "--trust-models",
        help="Also convert scikit-learn models saved with pickle/cloudpickle. Loading "
        "them runs code from that store: only for stores you trust.",
    ),  # fmt: skip
    as_json: bool = JsonOption,
) -> None:
    """Import experiments, runs (params, metric histories, tags, status, times) and registered
    scikit-learn models with their aliases from MLflow. Running it again adds only what is new."""
    from workbench.importers.mlflow import import_mlflow

    report = import_mlflow(tracking_uri, experiment or None, trust_models=trust_models, ws=workspace())
    if as_json:
        print_json(report.to_dict())
        return
    counts = report.counts()
    console.print(f"Imported from MLflow at {report.tracking_uri}:")
    print_table(None, ["what", "count"], [(key.replace("_", " "), value) for key, value in counts.items()])
    versions = report.models["versions"]
    if versions:
        rows = [(f"{v['model']}/{v['version']}", v["status"], v["ref"] or "", v["flavor"] or "", v["reason"] or "")
                for v in versions]  # fmt: skip
        print_table("Model versions", ["mlflow version", "status", "workbench", "flavor", "reason"], rows,
                    priority=[1, 2, 4, 3])  # fmt: skip
    aliases = [a for a in report.models["aliases"] if a["status"] != "already set"]
    if aliases:
        rows = [(f"{a['model']}@{a['alias']}", a["status"], a["version"], a["reason"] or "") for a in aliases]
        print_table("Aliases", ["mlflow alias", "status", "mlflow version", "reason"], rows)
