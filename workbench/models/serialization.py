"""Saving and loading models with skops, never with raw pickle.

A model is stored as skops bytes plus metadata: the flavor, the input schema taken from a sample
(column names and dtypes, which the server uses to validate requests), and the list of types the
file needs that skops does not trust by default. The list is recorded when *we* write the file;
on load only types that are both recorded and on Workbench's allow-list (scikit-learn, numpy,
scipy, and the standard containers) are trusted. A file that needs anything else is refused with
a clear error instead of being executed.
"""

from __future__ import annotations

from typing import Any

import skops.io as sio

from workbench.errors import WorkbenchError

FLAVOR = "sklearn-skops"

#: Module prefixes whose types may be trusted when loading a model written by Workbench.
TRUSTED_PREFIXES = (
    "sklearn.",
    "numpy.",
    "scipy.",
    "pandas.core.dtypes.",
    "xgboost.",
    "lightgbm.",
)
#: Individual types outside those packages that are plain data containers.
TRUSTED_EXACT = frozenset({"collections.OrderedDict", "collections.defaultdict", "builtins.slice"})


def _trusted(type_name: str) -> bool:
    """Library types are trusted; builtins/operator/functools callables (print, eval, attrgetter) never."""
    return type_name in TRUSTED_EXACT or type_name.startswith(TRUSTED_PREFIXES)


class UntrustedModelError(WorkbenchError):
    """A model file needs types Workbench does not trust; it is not loaded."""


def input_schema(sample: Any) -> list[dict[str, str]]:
    """Column names and dtypes of a sample DataFrame (or a 2-D array as f0..fn)."""
    import numpy as np
    import pandas as pd

    if isinstance(sample, pd.Series):
        sample = sample.to_frame()
    if isinstance(sample, pd.DataFrame):
        return [{"name": str(c), "dtype": str(t)} for c, t in sample.dtypes.items()]
    array = np.asarray(sample)
    if array.ndim != 2:
        raise WorkbenchError(
            "The model sample must be a DataFrame or a 2-D array.",
            "Pass sample=X.head() with the features the model is trained on.",
        )
    return [{"name": f"f{i}", "dtype": str(array.dtype)} for i in range(array.shape[1])]


def dump_model(model: Any, sample: Any = None) -> tuple[bytes, dict[str, Any]]:
    """skops bytes of `model` and its metadata (flavor, class, schema, types to trust)."""
    if not hasattr(model, "predict"):
        raise WorkbenchError(
            f"Cannot log a {type(model).__name__} as a model: it has no predict() method.",
            "Log a fitted scikit-learn estimator or pipeline.",
        )
    try:
        data = sio.dumps(model)
    except Exception as exc:  # skops raises many types for unsupported objects
        raise WorkbenchError(
            f"skops cannot serialize {type(model).__name__}: {exc}",
            "Use scikit-learn estimators/pipelines or types skops supports.",
        ) from exc
    untrusted = sio.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not _trusted(t)]
    if refused:
        raise UntrustedModelError(
            f"The model uses types that could not be loaded safely: {', '.join(refused)}.",
            "Use scikit-learn/numpy/scipy components (custom classes cannot be served safely).",
        )
    meta: dict[str, Any] = {
        "flavor": FLAVOR,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "trusted_types": sorted(untrusted),
        "schema": input_schema(sample) if sample is not None else None,
    }
    if hasattr(model, "classes_"):
        meta["classes"] = [c.item() if hasattr(c, "item") else c for c in model.classes_]
    return data, meta


def load_model(data: bytes, meta: dict[str, Any] | None = None) -> Any:
    """Load skops bytes, trusting only recorded types that are on the allow-list."""
    try:
        needed = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise UntrustedModelError(
            f"Not a readable skops model file: {exc}", "Log the model again with wb.log_model()."
        ) from exc
    recorded = set((meta or {}).get("trusted_types") or needed)
    refused = [t for t in needed if t not in recorded or not _trusted(t)]
    if refused:
        raise UntrustedModelError(
            f"Refusing to load a model that needs untrusted types: {', '.join(sorted(refused))}.",
            "Only scikit-learn/numpy/scipy types are loaded; re-log the model from trusted code.",
        )
    return sio.loads(data, trusted=needed)
