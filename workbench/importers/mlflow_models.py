"""MLflow registered models as registry versions: scikit-learn models converted to skops.

A version is converted only if its source run was imported (a registry version is a run's model
artifact: the converted model is stored on that run, then promoted without moving any alias, as
`workbench promote` does). Its aliases follow once converted.

Reading the model is where trust matters. An MLflow scikit-learn model saved with skops is read
through Workbench's own loader, which trusts only its reviewed allow-list of types: no code from
the store runs, so it is converted by default. One saved with pickle or cloudpickle can run any
code when it is loaded, so it is loaded only with `trust_models=True` (`--trust-models`), meant
for stores whose every writer you trust; otherwise it is reported as not converted. Other flavors
(PyTorch, XGBoost's native format, custom pyfunc, ...) are never loaded: they are reported, and
recorded on their source run as a reference (a tag naming the MLflow model version and flavor).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.errors import NotFoundError, WorkbenchError
from workbench.models import registry
from workbench.names import derive_name, validate_name
from workbench.runs import artifacts
from workbench.runs.ingest import index_runs, writer_for
from workbench.runs.store import get_run
from workbench.workspace import Workspace

SAFE_FORMATS = ("skops",)


@dataclass
class VersionResult:
    """What became of one MLflow model version."""

    model: str  # MLflow name
    version: int  # MLflow version
    status: str  # converted | already imported | not converted | referenced
    reason: str | None = None
    flavor: str | None = None
    source: str | None = None
    run_id: str | None = None  # the Workbench run it belongs to
    ref: str | None = None  # the Workbench version, `name@3`


@dataclass
class AliasResult:
    model: str
    alias: str
    version: int  # MLflow version
    status: str  # set | already set | kept | not set
    reason: str | None = None


def model_name(mlflow_name: str) -> str:
    """The registry name for an MLflow model (`catalog.schema.wine` stays, `My model` -> `My-model`)."""
    return derive_name(mlflow_name, prefix="mlflow", fallback="mlflow-model")


def artifact_name(mlflow_name: str, version: int) -> str:
    """The model artifact on the source run: one per MLflow version (a run may be several)."""
    return f"{model_name(mlflow_name)[:110]}.mlflow-v{int(version)}"


class ModelImporter:
    """Converts the registered models of one MLflow store whose source runs are in the workspace."""

    def __init__(self, client: Any, ws: Workspace, run_map: dict[str, str], trust_models: bool,
                 provenance: dict[str, Any]) -> None:  # fmt: skip
        self.client = client
        self.ws = ws
        self.run_map = run_map  # MLflow run id -> Workbench run id
        self.trust_models = trust_models
        self.provenance = provenance
        self.versions: list[VersionResult] = []
        self.aliases: list[AliasResult] = []

    def run(self) -> None:
        for registered in _pages(lambda token: self.client.search_registered_models(page_token=token)):
            found = list(_pages(lambda token, n=registered.name: self.client.search_model_versions(
                f"name = '{_quoted(n)}'", page_token=token)))  # fmt: skip
            converted: dict[int, str] = {}
            for version in sorted(found, key=lambda v: int(v.version)):
                result = self._version(version)
                self.versions.append(result)
                if result.ref is not None:
                    converted[int(version.version)] = result.ref
            aliases = self.client.get_registered_model(registered.name).aliases or {}
            for alias, version in sorted(aliases.items()):
                self.aliases.append(self._alias(registered.name, alias, int(version), converted))

    def _version(self, version: Any) -> VersionResult:
        number = int(version.version)
        result = VersionResult(version.name, number, "not converted", source=version.source)
        run_id = self.run_map.get(version.run_id or "")
        if run_id is None:
            result.reason = "its source run is not imported (not in the experiments imported, or still running)"
            return result
        result.run_id = run_id
        uri = self.client.get_model_version_download_uri(version.name, version.version)
        flavors = self._flavors(uri)
        if "sklearn" not in flavors:
            result.flavor = ", ".join(f for f in flavors if f != "python_function") or "python_function"
            result.status, result.reason = "referenced", f"{result.flavor} flavor: referenced, not loaded"
            self._reference(run_id, version, result.flavor)
            return result
        result.flavor = "sklearn"
        name, artifact = model_name(version.name), artifact_name(version.name, number)
        existing = _registered(self.ws, name, run_id, artifact)
        if existing is not None:
            result.status, result.ref = "already imported", existing
            return result
        fmt = flavors["sklearn"].get("serialization_format") or "cloudpickle"
        if fmt not in SAFE_FORMATS and not self.trust_models:
            result.reason = (f"saved with {fmt}, which runs code when loaded: pass --trust-models "
                             "(trust_models=True) to convert it, only for stores you trust")  # fmt: skip
            return result
        run = get_run(run_id, self.ws)
        if run.status != "finished":
            result.reason = f"its source run {run_id} is {run.status}; only finished runs become versions"
            return result
        try:
            model, sample = self._load(uri, flavors["sklearn"], fmt)
            result.ref = self._register(run_id, name, artifact, model, sample, version, fmt)
        except WorkbenchError as exc:  # a model Workbench cannot store or trust (e.g. a custom class)
            result.reason = exc.message
            return result
        except Exception as exc:  # whatever unpickling a foreign file raises (a missing module, ...)
            result.reason = f"MLflow could not load it: {type(exc).__name__}: {exc}"[:500]
            return result
        result.status = "converted"
        return result

    def _register(self, run_id: str, name: str, artifact: str, model: Any, sample: Any, version: Any,
                  fmt: str) -> str:  # fmt: skip
        """Store the model on its run (skops), then register it as a version of `name` (no alias moves)."""
        from workbench.models.serialization import dump_model

        data, meta = dump_model(model, sample)
        meta["imported_from"] = {**self.provenance, "model": version.name, "version": int(version.version),
                                 "source": version.source, "mlflow_run_id": version.run_id,
                                 "serialization_format": fmt}  # fmt: skip
        if not any(a.name == artifact for a in get_run(run_id, self.ws).artifacts):
            writer = writer_for(self.ws, run_id)
            artifacts.write_model(self.ws, writer.emit, artifact, data, meta)
            writer.close()  # one event line: a single append
            index_runs(self.ws, [run_id])
        reason = f"imported from MLflow model {version.name} version {version.version}"
        return registry.promote(run_id, name, alias=None, reason=reason, artifact=artifact, ws=self.ws).ref

    def _reference(self, run_id: str, version: Any, flavor: str) -> None:
        """Tag the source run with the MLflow version it is (once: the tag is written only if missing)."""
        key = f"mlflow.registered_model.{model_name(version.name)}.v{int(version.version)}"
        value = f"models:/{version.name}/{version.version} ({flavor}; source {version.source}; not loaded)"
        if get_run(run_id, self.ws).tags.get(key) == value:
            return
        writer = writer_for(self.ws, run_id)
        writer.emit("tag", key=key, value=value)
        writer.close()
        index_runs(self.ws, [run_id])

    def _alias(self, mlflow_name: str, alias: str, version: int, converted: dict[int, str]) -> AliasResult:
        """Carry an MLflow alias over, unless the Workbench model already has that alias elsewhere:
        an import never overrides an alias moved in Workbench."""
        result = AliasResult(mlflow_name, alias, version, "not set")
        ref = converted.get(version)
        if ref is None:
            result.reason = f"version {version} was not converted"
            return result
        try:
            validate_name(alias, "alias")
        except WorkbenchError as exc:
            result.reason = exc.message
            return result
        current = registry.get_version(ref, self.ws)
        holder = {a: v for v, a in _alias_holders(self.ws, current.name)}.get(alias)
        if holder == current.version:
            result.status = "already set"
        elif holder is not None:
            result.status = "kept"
            result.reason = f"{current.name}@{alias} is version {holder} in the workspace; left there"
        else:
            registry.set_alias(current.name, alias, current.version, by="import:mlflow", ws=self.ws,
                               reason=f"imported from MLflow: {mlflow_name}@{alias} is version {version}")  # fmt: skip
            result.status = "set"
        return result

    def _download(self, uri: str, dst: str, path: str | None = None) -> Path:
        """Artifacts of a model version (`uri`: where the store keeps them) into `dst`, through the
        store's own client settings (never MLflow's global tracking URI)."""
        import mlflow

        return Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"{uri.rstrip('/')}/{path}" if path else uri, dst_path=dst,
            tracking_uri=self.client.tracking_uri,
        ))  # fmt: skip

    def _flavors(self, uri: str) -> dict[str, Any]:
        """The flavors the version's MLmodel file lists (YAML, read without loading the model)."""
        from mlflow.models import Model

        with tempfile.TemporaryDirectory(prefix="wb-mlflow-") as tmp:
            return dict(Model.load(str(self._download(uri, tmp, "MLmodel"))).flavors or {})

    def _load(self, uri: str, flavor: dict[str, Any], fmt: str) -> tuple[Any, Any]:
        """The scikit-learn model and an input sample (its saved input example, else an empty frame
        shaped by its signature, else None). A skops file goes through Workbench's allow-list loader;
        only a pickled one, reached with trust_models, goes through MLflow's loader."""
        with tempfile.TemporaryDirectory(prefix="wb-mlflow-") as tmp:
            local = self._download(uri, tmp)
            if fmt in SAFE_FORMATS:
                from workbench.models.serialization import ALLOWED_TYPES, load_model

                data = (local / flavor.get("pickled_model", "model.skops")).read_bytes()
                # as if its metadata recorded the whole allow-list: whatever it needs must be on it
                model = load_model(data, {"trusted_types": sorted(ALLOWED_TYPES)})
            else:
                import mlflow.sklearn

                model = mlflow.sklearn.load_model(str(local))
            return model, _sample(local)

    def to_dict(self) -> dict[str, Any]:
        return {"versions": [asdict(v) for v in self.versions], "aliases": [asdict(a) for a in self.aliases]}


def _pages(search: Any) -> Any:
    """Every item of a paged MLflow search (`search(page_token)` returns a PagedList)."""
    token = None
    while True:
        page = search(token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")


def _registered(ws: Workspace, name: str, run_id: str, artifact: str) -> str | None:
    """The registry version that is `artifact` of `run_id` already, if any."""
    try:
        found = registry.versions(name, ws)
    except NotFoundError:
        return None
    return next((v.ref for v in found if v.run_id == run_id and v.artifact == artifact), None)


def _alias_holders(ws: Workspace, name: str) -> list[tuple[int, str]]:
    return [(v.version, alias) for v in registry.versions(name, ws) for alias in v.aliases]


def _sample(local: Path) -> Any:
    """The model's input example as a DataFrame, else an empty frame with its signature's columns."""
    import pandas as pd
    from mlflow.models import Model

    info = Model.load(str(local))
    try:
        example = info.load_input_example(str(local))
    except Exception:  # an example MLflow itself cannot read back: fall back to the signature
        example = None
    if isinstance(example, pd.DataFrame):
        return example
    if example is not None and not isinstance(example, dict):
        return pd.DataFrame(example)
    inputs = info.signature.inputs if info.signature is not None else None
    if inputs is not None and inputs.has_input_names():
        types = inputs.pandas_types()
        return pd.DataFrame({n: pd.Series(dtype=t) for n, t in zip(inputs.input_names(), types, strict=True)})
    return None
