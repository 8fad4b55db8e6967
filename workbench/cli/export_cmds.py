"""`workbench export prometheus DIR`: the files that hook model servers into Prometheus and Grafana."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.app import JsonOption, app, console, print_json

export_app = typer.Typer(help="Write files that run or watch models outside the workbench.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("prometheus")
def prometheus_cmd(
    directory: Path = typer.Argument(..., help="Folder to write into (made if missing)."),
    target: Optional[list[str]] = typer.Option(
        None,
        "--target",
        "-t",
        metavar="HOST:PORT",
        help="A model server for the sample scrape config to scrape (repeatable; default: 127.0.0.1:8000).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace files already in the folder."),
    as_json: bool = JsonOption,
) -> None:
    """Write alerts.yml (alert rules), grafana-dashboard.json and a sample prometheus.yml that loads
    the rules and scrapes the model servers' /metrics. See docs/operations.md."""
    from workbench.serving.prometheus.files import export_files

    written = export_files(directory, target or None, force=force)
    if as_json:
        print_json([str(path) for path in written])
        return
    for path in written:
        console.print(f"Wrote {path}", soft_wrap=True)


@export_app.command("docker")
def docker_cmd(
    ref: str = typer.Argument(..., help="NAME@alias or NAME@version of a registered model."),
    directory: Path = typer.Argument(..., help="Folder to write the build context into (new or empty)."),
    force: bool = typer.Option(False, "--force", help="Write into a folder that is not empty (replacing our files)."),
    as_json: bool = JsonOption,
) -> None:
    """Write a Docker build context serving one model version with no workspace: Dockerfile (slim
    Python of the training run, non-root, HEALTHCHECK), the model bundle (model/), requirements.txt
    pinned to the training run's packages, and a workbench wheel. See docs/operations.md."""
    from workbench.cli.app import workspace
    from workbench.serving.deploy_docker import export_docker

    context = export_docker(ref, directory, force=force, ws=workspace())
    if as_json:
        print_json({"model": context.version.ref, "python": context.python, "image": context.image,
                    "files": [str(p) for p in context.files], "unrecorded": context.unrecorded})  # fmt: skip
        return
    console.print(f"Wrote the build context of [bold]{context.version.ref}[/] (Python {context.python}) "
                  f"into {directory}", soft_wrap=True)  # fmt: skip
    if context.unrecorded:
        console.print(f"[yellow]Not recorded with the training run, pinned to this environment:[/] "
                      f"{', '.join(context.unrecorded)}", soft_wrap=True)  # fmt: skip
    console.print(f"Build it with: docker build -t {context.image} {directory}", soft_wrap=True)


@export_app.command("k8s")
def k8s_cmd(
    ref: str = typer.Argument(..., help="NAME@alias or NAME@version of a registered model."),
    image: Optional[str] = typer.Option(
        None, "--image", help="The image to run (default: NAME:VERSION, the tag 'workbench export docker' suggests)."
    ),  # fmt: skip
    replicas: int = typer.Option(2, "--replicas", help="Pods to run (without --hpa)."),
    hpa: bool = typer.Option(False, "--hpa/--no-hpa", help="Add a HorizontalPodAutoscaler scaling on CPU."),
    min_replicas: int = typer.Option(2, "--min", help="Fewest pods the autoscaler keeps (--hpa)."),
    max_replicas: int = typer.Option(10, "--max", help="Most pods the autoscaler starts (--hpa)."),
    cpu_target: int = typer.Option(
        70,
        "--cpu-target",
        metavar="PCT",
        help="CPU utilisation (percent of the request) the autoscaler aims at (--hpa).",
    ),  # fmt: skip
    port: int = typer.Option(8000, "--port", help="Port the model server listens on in the pod."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="Write deployment.yaml, service.yaml (and hpa.yaml) into DIR instead of printing one YAML stream.",
    ),  # fmt: skip
    force: bool = typer.Option(False, "--force", help="Replace files already in --out."),
    as_json: bool = JsonOption,
) -> None:
    """Kubernetes manifests for the image of 'workbench export docker': a Deployment (probes on /health,
    resource requests and limits, Prometheus scrape annotations, non-root), a Service and optionally a
    HorizontalPodAutoscaler. Prints YAML for 'kubectl apply -f -' unless --out. See docs/operations.md."""
    import sys

    from workbench.cli.app import workspace_or_server
    from workbench.serving.deploy_k8s import K8sOptions, export_k8s, render

    options = K8sOptions(image=image, replicas=replicas, port=port, hpa=hpa, min_replicas=min_replicas,
                         max_replicas=max_replicas, cpu_target=cpu_target)  # fmt: skip
    _, objects, written = export_k8s(ref, out, options, force=force, ws=workspace_or_server())
    if as_json:
        print_json([str(path) for path in written] if out is not None else list(objects.values()))
    elif out is not None:
        for path in written:
            console.print(f"Wrote {path}", soft_wrap=True)
    else:
        sys.stdout.write(render(objects))
