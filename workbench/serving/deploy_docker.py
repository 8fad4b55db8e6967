"""`workbench export docker NAME@alias DIR`: a Docker build context serving one model version.

The context is everything `docker build` needs, with nothing to download but the packages:

- `Dockerfile`: a slim Python base image of the Python major.minor the training run recorded
  (`ARG PYTHON_IMAGE` overrides it, e.g. for a mirror), a non-root user (uid 10001), the
  requirements and the workbench wheel installed, `EXPOSE 8000`, a `HEALTHCHECK` on /health with
  `python -c` and urllib (slim images have no curl), and an `ENTRYPOINT` running
  `workbench serve --bundle model --host 0.0.0.0` (`CMD ["--port", "8000"]`, replaceable);
- `model/`: the version as a bundle (`serving.bundle`: skops file, record, schema, model card),
  served with no workspace; the prediction log goes to `$XDG_CACHE_HOME`, set to
  `/var/cache/workbench` in the image (mount a volume there to keep it);
- `requirements.txt`: the model's libraries (scikit-learn, numpy, scipy, pandas, skops, joblib,
  threadpoolctl, and xgboost or lightgbm when the model needs them) and what the server imports,
  each pinned to the version the training run recorded (`runs.packages`); a package the run did
  not record is pinned to this environment's version, and the line says so;
- `workbench-<version>-py3-none-any.whl`: workbench itself, which is not on PyPI. The wheel is made
  here from the files of the installed `workbench` package (`package_wheel`), not built from a
  source tree: that works the same from a checkout, an editable install or an installed wheel, and
  needs no build tools or network. It holds the Python package without the JupyterLab front end
  and declares only what serving needs, so the image does not carry JupyterLab.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from workbench.models.registry import ModelVersion
from workbench.workspace import Workspace, current_workspace

#: The model's libraries: what unpickles and runs a scikit-learn model the way it was trained.
MODEL_PACKAGES = ("scikit-learn", "numpy", "scipy", "pandas", "skops", "joblib", "threadpoolctl")
#: Libraries a model may come from beyond scikit-learn (by the module its class or trusted types name).
EXTRA_MODEL_PACKAGES = {"xgboost": "xgboost", "lightgbm": "lightgbm"}
#: What `workbench serve --bundle` imports beyond the model's libraries (the wheel declares these).
SERVER_PACKAGES = ("fastapi", "uvicorn", "prometheus-client", "typer", "rich", "pyyaml", "duckdb", "httpx", "psutil",
                   "markdown-it-py")  # fmt: skip
#: Extras installed with a server package (uvicorn's fast event loop and HTTP parser).
EXTRAS = {"uvicorn": "[standard]"}
PORT = 8000
MODEL_DIR = "model"
#: Files of the package a model server does not need (the JupyterLab front end; byte code is rebuilt).
_LEFT_OUT = re.compile(r"(^|/)(__pycache__|labextension)(/|$)|\.py[co]$")


@dataclass
class DockerContext:
    """What an export wrote, and what to tell the user about it."""

    version: ModelVersion
    python: str
    image: str
    files: list[Path] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)  # pinned to this environment: the run did not record them


def normalize(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503): `Scikit_Learn` -> `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def image_name(version: ModelVersion) -> str:
    """A suggested image name and tag: `wine-classifier:3`."""
    return f"{re.sub(r'[^a-z0-9._-]+', '-', version.name.lower()).strip('.-_') or 'model'}:{version.version}"


def model_packages(version: ModelVersion) -> list[str]:
    """The libraries the model needs: scikit-learn's stack, plus xgboost or lightgbm when it holds one."""
    named = [str(version.meta.get("class", "")), *map(str, version.meta.get("trusted_types") or [])]
    extra = sorted({package for module, package in EXTRA_MODEL_PACKAGES.items()
                    if any(name.startswith(f"{module}.") for name in named)})  # fmt: skip
    return [*MODEL_PACKAGES, *extra]


def requirements(version: ModelVersion, recorded: dict[str, str], here: dict[str, str],
                 run_id: str | None) -> tuple[str, list[str]]:  # fmt: skip
    """requirements.txt pinning the model's and the server's packages to `recorded` (the training run's
    packages), else to `here` (this environment's); and the packages pinned from `here`."""
    recorded = {normalize(k): v for k, v in recorded.items()}
    here = {normalize(k): v for k, v in here.items()}
    source = f"training run {run_id}" if run_id else "the training run"
    lines = [f"# Pinned to the versions recorded with {source} of {version.ref}; written by workbench export docker.",
             "# The model's libraries:"]  # fmt: skip
    unrecorded: list[str] = []

    def pin(package: str) -> str:
        key = normalize(package)
        requirement = f"{package}{EXTRAS.get(key, '')}"
        if key in recorded:
            return f"{requirement}=={recorded[key]}"
        if key in here:
            unrecorded.append(package)
            return f"{requirement}=={here[key]}  # not recorded with the run: this environment's version"
        unrecorded.append(package)
        return f"{requirement}  # not recorded with the run nor installed here: unpinned"

    lines += [pin(p) for p in model_packages(version)]
    lines += ["# What the model server (workbench serve) needs:"]
    lines += [pin(p) for p in SERVER_PACKAGES]
    return "\n".join(lines) + "\n", unrecorded


def dockerfile(version: ModelVersion, python: str, wheel: str) -> str:
    """The Dockerfile of the context (see the module doc)."""
    health = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/health', timeout=4)"
    return f"""\
# A model server for {version.ref} ({version.meta.get("class", "model")}), written by `workbench export docker`.
# Build and run:  docker build -t {image_name(version)} .   docker run --rm -p {PORT}:{PORT} {image_name(version)}
# Python {python} as recorded with the training run; another base image: --build-arg PYTHON_IMAGE=...
ARG PYTHON_IMAGE=python:{python}-slim
FROM ${{PYTHON_IMAGE}}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    XDG_CACHE_HOME=/var/cache/workbench
# A non-root user; the prediction log goes to /var/cache/workbench (mount a volume there to keep it).
RUN groupadd --system --gid 10001 workbench \\
 && useradd --system --uid 10001 --gid workbench --no-create-home --home-dir /nonexistent \\
    --shell /usr/sbin/nologin workbench \\
 && mkdir -p /var/cache/workbench && chown workbench:workbench /var/cache/workbench

WORKDIR /app
COPY requirements.txt {wheel} ./
RUN pip install --no-cache-dir -r requirements.txt ./{wheel}
COPY {MODEL_DIR}/ {MODEL_DIR}/

USER 10001:10001
EXPOSE {PORT}
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \\
  CMD ["python", "-c", "{health}"]
ENTRYPOINT ["workbench", "serve", "--bundle", "{MODEL_DIR}", "--host", "0.0.0.0"]
CMD ["--port", "{PORT}"]
"""


def export_docker(ref: str, directory: str | Path, *, force: bool = False,
                  ws: Workspace | None = None) -> DockerContext:  # fmt: skip
    """Write the build context serving model version `ref` into `directory` (see the module doc).

    Refused when `directory` holds anything already (a build context is sent to the builder whole),
    unless `force`; nothing is written when the model cannot be found or read."""
    from workbench import blobs
    from workbench.errors import NotFoundError
    from workbench.models.card import model_card
    from workbench.models.registry import get_version
    from workbench.runs.environment import packages
    from workbench.runs.store import get_run
    from workbench.serving.bundle import bundle_files
    from workbench.serving.export_folder import write_folder

    ws = ws or current_workspace()
    version = get_version(ref, ws)
    data = blobs.read_verified(ws, version.blob, what=f"model {version.ref}")
    try:
        run = get_run(version.run_id, ws)
    except NotFoundError:  # the run was deleted: the registry kept the model, not its environment
        run = None
    recorded = run.packages if run is not None else {}
    python = _major_minor(run.python_version if run is not None and run.python_version else None)
    text, unrecorded = requirements(version, recorded, packages(), version.run_id)
    wheel_name, wheel = package_wheel()
    files: dict[str, str | bytes] = {"Dockerfile": dockerfile(version, python, wheel_name), "requirements.txt": text,
                                     wheel_name: wheel, ".dockerignore": "*\n!Dockerfile\n!requirements.txt\n"
                                     f"!{wheel_name}\n!{MODEL_DIR}/\n"}  # fmt: skip
    for name, content in bundle_files(version, data, model_card(version.ref, ws=ws)).items():
        files[f"{MODEL_DIR}/{name}"] = content
    written = write_folder(directory, files, force=force, empty=True)
    return DockerContext(version, python, image_name(version), written, unrecorded)


def _major_minor(version: str | None) -> str:
    """`3.11.7` -> `3.11`; this interpreter's when the run recorded none."""
    import platform

    parts = (version or platform.python_version()).split(".")
    return ".".join(parts[:2])


# -- the workbench wheel


def package_wheel() -> tuple[str, bytes]:
    """(file name, bytes) of a wheel of the installed workbench package, for serving (see the module doc)."""
    import workbench

    root = Path(workbench.__file__).resolve().parent
    name = f"workbench-{workbench.__version__}"
    entries: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root.parent).as_posix()
        if path.is_file() and not _LEFT_OUT.search(relative):
            entries[relative] = path.read_bytes()
    info = f"{name}.dist-info"
    requires = "".join(f"Requires-Dist: {normalize(p)}{EXTRAS.get(normalize(p), '')}\n"
                       for p in (*MODEL_PACKAGES, *SERVER_PACKAGES))  # fmt: skip
    entries[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: workbench\nVersion: {workbench.__version__}\n"
        "Summary: Workbench, packaged for serving a model (workbench export docker)\n"
        f"Requires-Python: >=3.10\n{requires}"
    ).encode()
    entries[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: workbench export docker\nRoot-Is-Purelib: true\n" \
                               b"Tag: py3-none-any\n"  # fmt: skip
    entries[f"{info}/entry_points.txt"] = b"[console_scripts]\nworkbench = workbench.cli.app:main\n"
    record = [f"{path},sha256={_digest(content)},{len(content)}" for path, content in entries.items()]
    entries[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in entries.items():
            item = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))  # the same bytes for the same files
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(item, content)
    return f"{name}-py3-none-any.whl", buffer.getvalue()


def _digest(content: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()


__all__ = ["DockerContext", "export_docker", "package_wheel", "requirements"]
