"""`workbench export k8s NAME@alias`: Kubernetes manifests running the image `workbench export docker` builds.

Plain dictionaries dumped as YAML, one object each:

- a `Deployment` (apps/v1) of the image, whose pods run as uid 10001 with no privileges, a
  read-only root filesystem and the prediction log on an `emptyDir` at /var/cache/workbench; a
  startup, a readiness and a liveness probe on `GET /health`; CPU and memory requests and limits;
  the `prometheus.io/scrape`, `/port` and `/path` annotations the usual Prometheus pod discovery
  reads; rolling updates that keep every ready pod until its replacement is ready;
- a `Service` (v1, ClusterIP) on port 80 in front of the pods' `http` port;
- with `hpa`, a `HorizontalPodAutoscaler` (autoscaling/v2) scaling the Deployment on CPU
  utilisation; the Deployment then has no `replicas` of its own, so applying the manifests again
  does not undo the autoscaler's choice.

The selector holds the model's name and the instance (model and alias) but not the version: a
selector cannot change, so the next version rolls out through the same Deployment. Which version
a pod serves is its `app.kubernetes.io/version` label and its image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ValidationError
from workbench.models.registry import ModelVersion
from workbench.workspace import Workspace

DEPLOYMENT, SERVICE, HPA = "deployment.yaml", "service.yaml", "hpa.yaml"
SERVICE_PORT = 80
#: What the image's user can write (`workbench export docker` sets XDG_CACHE_HOME there).
CACHE_PATH = "/var/cache/workbench"
UID = 10001


@dataclass(frozen=True)
class K8sOptions:
    """What `workbench export k8s` lets the user choose (defaults: a small, always-on model server)."""

    image: str | None = None  # default: the tag `workbench export docker` suggests (NAME:VERSION)
    replicas: int = 2
    port: int = 8000
    hpa: bool = False
    min_replicas: int = 2
    max_replicas: int = 10
    cpu_target: int = 70  # percent of the CPU request
    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"

    def check(self) -> None:
        """Refuse what Kubernetes would refuse, with the option to fix."""
        problems = []
        if not 1 <= self.port <= 65535:
            problems.append(("--port", "a port from 1 to 65535"))
        if self.replicas < 1:
            problems.append(("--replicas", "at least 1"))
        if self.hpa and self.min_replicas < 1:
            problems.append(("--min", "at least 1"))
        if self.hpa and self.max_replicas < self.min_replicas:
            problems.append(("--max", f"at least --min ({self.min_replicas})"))
        if self.hpa and not 1 <= self.cpu_target <= 1000:
            problems.append(("--cpu-target", "a percentage of the CPU request from 1 to 1000"))
        if self.image is not None and (not self.image.strip() or any(c.isspace() for c in self.image)):
            problems.append(("--image", "an image reference without spaces, e.g. registry.example.com/wine:3"))
        if problems:
            option, rule = problems[0]
            raise ValidationError(f"Invalid {option}: it must be {rule}.", f"Give {option} {rule}.")


def dns_label(text: str) -> str:
    """`text` as a Kubernetes object name and label value (DNS-1123 label: a-z, 0-9, '-', at most 63)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", cleaned)[:63].rstrip("-") or "model"


def instance_name(version: ModelVersion, ref: str) -> str:
    """The objects' name: the model and what `ref` named (`wine-production`, `wine-v3`, `wine-latest`)."""
    from workbench.names import parse_ref

    parsed = parse_ref(ref, "model", allow_alias=True)
    which = parsed.alias or (f"v{parsed.version}" if parsed.version is not None else "latest")
    return dns_label(f"{version.name}-{which}")


def manifests(version: ModelVersion, ref: str, options: K8sOptions | None = None) -> dict[str, dict[str, Any]]:
    """The manifests (file name -> object) serving `version`, which `ref` resolved to (module doc)."""
    from workbench.serving.deploy_docker import image_name

    options = options or K8sOptions()
    options.check()
    name = instance_name(version, ref)
    selector = {"app.kubernetes.io/name": dns_label(version.name), "app.kubernetes.io/instance": name}
    labels = {**selector, "app.kubernetes.io/component": "model-server", "app.kubernetes.io/part-of": "workbench"}
    pod_labels = {**labels, "app.kubernetes.io/version": str(version.version)}
    result = {DEPLOYMENT: _deployment(name, labels, selector, pod_labels, options.image or image_name(version),
                                      options),  # fmt: skip
              SERVICE: _service(name, labels, selector)}  # fmt: skip
    if options.hpa:
        result[HPA] = _autoscaler(name, labels, options)
    return result


def _probe(period: int, failures: int, timeout: int = 3) -> dict[str, Any]:
    return {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": period, "timeoutSeconds": timeout,
            "failureThreshold": failures}  # fmt: skip


def _deployment(name: str, labels: dict[str, str], selector: dict[str, str], pod_labels: dict[str, str], image: str,
                options: K8sOptions) -> dict[str, Any]:  # fmt: skip
    container = {
        "name": "model-server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--port", str(options.port)],  # replaces the image's CMD; its ENTRYPOINT serves the bundle
        "ports": [{"name": "http", "containerPort": options.port, "protocol": "TCP"}],
        "startupProbe": _probe(period=2, failures=60),  # loading a large model: up to 2 minutes
        "readinessProbe": _probe(period=5, failures=2),
        "livenessProbe": _probe(period=15, failures=4, timeout=5),
        "resources": {
            "requests": {"cpu": options.cpu_request, "memory": options.memory_request},
            "limits": {"cpu": options.cpu_limit, "memory": options.memory_limit},
        },  # fmt: skip
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },  # fmt: skip
        "volumeMounts": [{"name": "cache", "mountPath": CACHE_PATH}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(options.port),
                    "prometheus.io/path": "/metrics",
                },
            },  # fmt: skip
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": UID,
                    "runAsGroup": UID,
                    "fsGroup": UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },  # fmt: skip
                "automountServiceAccountToken": False,  # the server never talks to the Kubernetes API
                "containers": [container],
                "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
            },
        },
    }
    if not options.hpa:
        spec = {"replicas": options.replicas, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels}, "spec": spec}


def _service(name: str, labels: dict[str, str], selector: dict[str, str]) -> dict[str, Any]:
    port = {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
            "spec": {"type": "ClusterIP", "selector": selector, "ports": [port]}}  # fmt: skip


def _autoscaler(name: str, labels: dict[str, str], options: K8sOptions) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name,
            "labels": labels}, "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": options.min_replicas, "maxReplicas": options.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": options.cpu_target}}}]}}  # fmt: skip


def render(objects: dict[str, dict[str, Any]]) -> str:
    """The objects as one YAML stream (`kubectl apply -f -`), documents separated by `---`."""
    import yaml

    return "---\n".join(yaml.safe_dump(obj, sort_keys=False) for obj in objects.values())


def export_k8s(ref: str, out: str | Path | None = None, options: K8sOptions | None = None, *, force: bool = False,
               ws: Workspace | None = None) -> tuple[ModelVersion, dict[str, dict[str, Any]], list[Path]]:  # fmt: skip
    """The manifests serving model version `ref` (resolved now: an alias is followed by exporting
    again), written as deployment.yaml, service.yaml (and hpa.yaml) into `out` when given, with the
    export rules of `export_folder.write_folder` (existing files kept unless `force`)."""
    import yaml

    from workbench.models.registry import get_version
    from workbench.serving.export_folder import write_folder

    version = get_version(ref, ws)
    objects = manifests(version, ref, options)
    written: list[Path] = []
    if out is not None:
        files: dict[str, str | bytes] = {n: yaml.safe_dump(o, sort_keys=False) for n, o in objects.items()}
        written = write_folder(out, files, force=force)
    return version, objects, written
