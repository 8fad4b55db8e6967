"""Containers and Kubernetes (issue 22): `workbench export docker` and `workbench export k8s`.

The Docker build context is checked the way a builder would use it, minus the container (base
images cannot be pulled here): its requirements.txt and workbench wheel go into a fresh virtualenv,
and the ENTRYPOINT + CMD of its Dockerfile run from the context folder (the image's WORKDIR) with
that virtualenv first on PATH, without a workspace; the bundled model answers /predict exactly as
the workspace's own server and the registry's model do. The Kubernetes manifests are deserialized
into the official `kubernetes` client's models (V1Deployment, V1Service, V2HorizontalPodAutoscaler),
which must give back exactly the same objects (so no key is unknown or mistyped), and the
references between them (selectors, named ports, probes, scrape annotations, scale target) are
checked by hand, since the client's models do not check those.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from conftest import run_cli_in_process
from model_fixtures import module_workspace, train_run

import workbench as wb
from workbench.errors import NotFoundError, ValidationError
from workbench.models.registry import get_version
from workbench.serving.bundle import MODEL_FILE, BundleSource
from workbench.serving.deploy_k8s import K8sOptions, manifests

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
KINDS = {"Deployment": "V1Deployment", "Service": "V1Service", "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, wine_frame) -> Iterator[Any]:
    """A workspace with wine@production (version 1), the current workspace of this module's tests."""

    root = tmp_path_factory.mktemp("deploy")
    with module_workspace(root) as ws:
        wb.snapshot("wine", wine_frame)
        wb.promote(train_run())
        yield ws


# -- Kubernetes


def _validated(obj: dict[str, Any]) -> Any:
    """`obj` as the kubernetes client's model of its kind; serialized back it must be `obj` itself."""
    from kubernetes.client import ApiClient

    client = ApiClient()
    model = client._ApiClient__deserialize(obj, KINDS[obj["kind"]])
    assert client.sanitize_for_serialization(model) == obj, f"unknown or mistyped fields in the {obj['kind']}"
    return model


def _check_references(objects: dict[str, dict[str, Any]], port: int) -> None:
    """What the schema cannot say: the objects fit together and the server is reachable as announced."""
    deployment, service = objects["deployment.yaml"], objects["service.yaml"]
    name = deployment["metadata"]["name"]
    assert DNS_LABEL.match(name) and service["metadata"]["name"] == name
    template = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items(), "the selector must match the pods"
    assert service["spec"]["selector"] == selector
    assert "app.kubernetes.io/version" not in selector  # a selector cannot change: versions roll out under it
    [container] = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port} and container["args"] == ["--port", str(port)]
    assert service["spec"]["ports"][0]["targetPort"] in ports
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health" and ports[get["port"]] == port, probe
    annotations = template["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                           "prometheus.io/path": "/metrics"}  # fmt: skip
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    pod_security, security = template["spec"]["securityContext"], container["securityContext"]
    assert pod_security["runAsNonRoot"] and pod_security["runAsUser"] != 0 and security["runAsNonRoot"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"] for v in template["spec"]["volumes"]}
    assert "/var/cache/workbench" in mounts and set(mounts.values()) <= volumes  # the prediction log is writable
    hpa = objects.get("hpa.yaml")
    if hpa is None:
        assert deployment["spec"]["replicas"] >= 1
        return
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", name)
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "cpu" in resources["requests"]  # CPU utilisation is a share of the request


def test_k8s_manifests_are_valid_kubernetes_objects(registry):
    version = get_version("wine@production")
    cases = [K8sOptions(), K8sOptions(hpa=True, min_replicas=3, max_replicas=7, cpu_target=60, port=9000,
                                      image="registry.example.com/ml/wine:1")]  # fmt: skip
    for options in cases:
        objects = manifests(version, "wine@production", options)
        assert set(objects) == ({"deployment.yaml", "service.yaml", "hpa.yaml"} if options.hpa
                                else {"deployment.yaml", "service.yaml"})  # fmt: skip
        models = {name: _validated(obj) for name, obj in objects.items()}
        _check_references(objects, options.port)
        container = models["deployment.yaml"].spec.template.spec.containers[0]
        assert container.image == (options.image or "wine:1")
        if options.hpa:
            metric = models["hpa.yaml"].spec.metrics[0].resource
            assert (metric.name, metric.target.average_utilization) == ("cpu", 60)
    mistyped = manifests(version, "wine@production")["deployment.yaml"]
    mistyped["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/health"}}
    with pytest.raises(AssertionError, match="unknown or mistyped"):
        _validated(mistyped)  # the check catches what Kubernetes would drop or refuse
    for wrong in (K8sOptions(port=0), K8sOptions(hpa=True, min_replicas=5, max_replicas=2), K8sOptions(replicas=0)):
        with pytest.raises(ValidationError):
            manifests(version, "wine@production", wrong)


def test_k8s_command_prints_a_stream_or_writes_files(registry, capsys, tmp_path):
    printed = run_cli_in_process(capsys, "export", "k8s", "wine@production", "--hpa", "--max", "4")
    assert printed.returncode == 0, printed.stderr
    objects = list(yaml.safe_load_all(printed.stdout))
    assert [o["kind"] for o in objects] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for obj in objects:
        _validated(obj)
    assert objects[0]["metadata"]["name"] == "wine-production"

    out = tmp_path / "k8s"
    written = run_cli_in_process(capsys, "export", "k8s", "wine@1", "--out", str(out), "--port", "8080")
    assert written.returncode == 0, written.stderr
    files = {p.name: yaml.safe_load(p.read_text()) for p in out.iterdir()}
    assert set(files) == {"deployment.yaml", "service.yaml"}
    _check_references(files, 8080)
    assert files["deployment.yaml"]["metadata"]["name"] == "wine-v1"

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = run_cli_in_process(capsys, "export", "k8s", "wine@1", "--out", str(out), "--hpa")
    assert again.returncode != 0 and "--force" in again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written, not even hpa.yaml

    unknown = run_cli_in_process(capsys, "export", "k8s", "nosuch@production", "--out", str(tmp_path / "none"))
    assert unknown.returncode != 0 and "No model named 'nosuch'" in unknown.stderr
    assert "Traceback" not in unknown.stderr and not (tmp_path / "none").exists()


# -- Docker


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _exec_form(dockerfile: str, instruction: str) -> list[str]:
    """The JSON array of an exec-form instruction (`ENTRYPOINT [...]`) of a Dockerfile."""
    [line] = [line for line in dockerfile.splitlines() if line.startswith(f"{instruction} ")]
    return json.loads(line[len(instruction) + 1 :])


def test_docker_export_refuses_unknown_models_and_full_folders(registry, capsys, tmp_path):
    missing = run_cli_in_process(capsys, "export", "docker", "nosuch@production", str(tmp_path / "ctx"))
    assert missing.returncode != 0 and "No model named 'nosuch'" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "ctx").exists()
    no_alias = run_cli_in_process(capsys, "export", "docker", "wine@staging", str(tmp_path / "ctx"))
    assert no_alias.returncode != 0 and "no alias 'staging'" in no_alias.stderr and not (tmp_path / "ctx").exists()

    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    refused = run_cli_in_process(capsys, "export", "docker", "wine@production", str(full))
    assert refused.returncode != 0 and "not empty" in refused.stderr and "--force" in refused.stderr
    assert [p.name for p in full.iterdir()] == ["notes.txt"]
    forced = run_cli_in_process(capsys, "export", "docker", "wine@production", str(full), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (full / "Dockerfile").is_file() and (full / "notes.txt").read_text() == "mine"


def test_a_bundle_serves_only_its_own_verified_version(registry, tmp_path):
    from workbench.serving.deploy_docker import export_docker

    export_docker("wine@production", tmp_path / "ctx")
    bundle = tmp_path / "ctx" / "model"
    source = BundleSource(bundle, state=tmp_path / "state")
    assert source.load("wine").version.ref == source.load("wine@production").version.ref == "wine@1"
    with pytest.raises(NotFoundError, match="holds wine@1 only"):
        source.load("wine@2")
    data = bytearray((bundle / MODEL_FILE).read_bytes())
    data[-1] ^= 1
    (bundle / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ValidationError, match="does not match the sha256"):
        source.load("wine@1")
    with pytest.raises(NotFoundError, match="not a model bundle"):
        BundleSource(tmp_path, state=tmp_path / "state")


@pytest.mark.slow
def test_docker_context_serves_the_model_without_a_workspace(registry, capsys, tmp_path, wine_frame):
    context = tmp_path / "ctx"
    result = run_cli_in_process(capsys, "export", "docker", "wine@production", str(context), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["model"] == "wine@1" and info["image"] == "wine:1" and info["unrecorded"] == []

    run = wb.get_run(get_version("wine@1").run_id)
    dockerfile = (context / "Dockerfile").read_text()
    major_minor = ".".join(run.python_version.split(".")[:2])
    assert f"ARG PYTHON_IMAGE=python:{major_minor}-slim" in dockerfile and "FROM ${PYTHON_IMAGE}" in dockerfile
    assert re.search(r"^USER 10001", dockerfile, re.M) and "EXPOSE 8000" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "curl" not in dockerfile
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)(?:\[\w+\])?==([^\s#]+)", (context / "requirements.txt").read_text(),
                           re.M))  # fmt: skip
    for package in ("scikit-learn", "numpy", "scipy", "pandas", "skops"):
        assert pins[package] == run.packages[package], package  # the versions the model was trained with
    assert json.loads((context / "model" / "schema.json").read_text()) == get_version("wine@1").schema
    assert "# Model card: wine@1" in (context / "model" / "MODEL_CARD.md").read_text()
    [wheel] = [p.name for p in context.glob("*.whl")]

    # The image's RUN pip install, into a fresh virtualenv (pip's cache makes it quick here).
    venv = tmp_path / "venv"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    "--no-compile", "-r", "requirements.txt", f"./{wheel}"], cwd=context, check=True)  # fmt: skip
    print(f"fresh virtualenv with the context's requirements: {time.monotonic() - started:.1f} s")
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }  # fmt: skip: no WORKBENCH_HOME, no PYTHONPATH
    where = subprocess.run(["python", "-c", "import workbench; print(workbench.__file__)"], env=env, cwd=context,
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert where.startswith(str(venv)), where  # the wheel's copy, not this checkout

    port = _free_port()
    command = _exec_form(dockerfile, "ENTRYPOINT") + _exec_form(dockerfile, "CMD")
    assert command[-2:] == ["--port", "8000"]
    command[-1] = str(port)
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(command, cwd=context, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        health = _exec_form(dockerfile, "  CMD")  # the HEALTHCHECK, with the venv's python
        subprocess.run([*health[:2], health[2].replace("8000", str(port))], env=env, check=True, timeout=10)

        rows = wine_frame[FEATURES].sample(40, random_state=1)
        body = {"records": rows.to_dict(orient="records")}
        answer = httpx.post(f"{url}/predict", json=body).json()
        assert (answer["model"], answer["version"]) == ("wine", 1)
        estimator, _ = wb.load_model("wine@production")
        assert answer["predictions"] == estimator.predict(rows).tolist()
        with wb.serve("wine@production", log_predictions=False) as own:
            assert httpx.post(f"{own.url}/predict", json=body).json()["predictions"] == answer["predictions"]
        assert httpx.post(f"{url}/predict", json={"records": [{"alcohol": 1}]}).status_code == 422
        assert b"workbench_requests_total" in httpx.get(f"{url}/metrics").content
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    logged = list((tmp_path / "cache" / "workbench" / "bundles" / "wine-1" / "predictions" / "wine").glob("*.jsonl"))
    assert logged and sum(len(p.read_text().splitlines()) for p in logged) == 40  # the log went to the cache
    assert not (context / "model" / "predictions").exists()
    shutil.rmtree(venv)


def test_requirements_pin_what_the_run_recorded_and_say_what_it_did_not(registry):
    from workbench.serving.deploy_docker import requirements

    version = get_version("wine@1")
    text, unrecorded = requirements(version, {"Scikit_Learn": "1.4.2", "numpy": "1.26.4"},
                                    {"scipy": "1.13.0", "fastapi": "0.110.0"}, "RUN")  # fmt: skip
    assert "scikit-learn==1.4.2\n" in text and "numpy==1.26.4\n" in text  # the run's, not this environment's
    assert "scipy==1.13.0  # not recorded with the run: this environment's version" in text
    assert "pandas  # not recorded with the run nor installed here: unpinned" in text
    assert "scikit-learn" not in unrecorded and {"scipy", "pandas", "fastapi"} <= set(unrecorded)
    assert "training run RUN of wine@1" in text.splitlines()[0]
