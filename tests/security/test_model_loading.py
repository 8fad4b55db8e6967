"""Loading a model never runs code from the file: trust is by exact type name, never by prefix.

The attack these tests perform for real: a class whose `__module__`/`__name__` claim to be
`numpy.testing._private.utils.runstring` (a numpy function that exec()s a string) with a
`__reduce__` that calls it with Python code. Under prefix trust ("anything in numpy.") skops
would rebuild the object by calling `runstring(code, {})`, so merely loading the model runs the
attacker's code. Every loader (registry, `wb.load_model`, `load_artifact`, the model server) must
refuse it, a marker file the payload would write must never appear, and `wb.log_model` must refuse
it before it is stored. Legitimate scikit-learn models must still round-trip exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

import workbench as wb
from workbench import blobs
from workbench.models.serialization import UntrustedModelError, dump_model, load_model, structure_problems
from workbench.runs.store import load_artifact
from workbench.serving.models import load_version
from workbench.tracking import _emit_artifact

RUNSTRING = "numpy.testing._private.utils.runstring"


def runstring_model(marker: Path) -> object:
    """An object with predict() whose skops file calls numpy's runstring(code) on load."""

    class Payload:
        def predict(self, X: object) -> object:
            return X

        def __reduce__(self) -> tuple:
            return (type(self), (f"open({str(marker)!r}, 'w').write('pwned')", {}))

    Payload.__module__ = "numpy.testing._private.utils"
    Payload.__name__ = Payload.__qualname__ = "runstring"
    return Payload()


@pytest.fixture()
def wine() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True, as_frame=True)
    return X, y


def test_the_payload_is_live(tmp_path):
    """Guard for the other tests: skops told to trust the name really runs the code."""
    marker = tmp_path / "live"
    data = sio.dumps(runstring_model(marker))
    assert sio.get_untrusted_types(data=data) == [RUNSTRING]
    sio.loads(data, trusted=[RUNSTRING])
    assert marker.read_text() == "pwned"


def test_log_model_refuses_the_crafted_class(ws, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(UntrustedModelError, match="untrusted types: numpy.testing._private.utils.runstring") as err:
        dump_model(runstring_model(marker))
    assert "custom classes" in err.value.hint
    with pytest.raises(UntrustedModelError) as logged:
        wb.log_model(runstring_model(marker), "evil")
    assert str(logged.value) == str(err.value)  # one message for save and load
    assert list(blobs.iter_blob_ids(ws)) == []  # refused before anything was stored
    assert not marker.exists()


def _store_crafted_model(ws, data: bytes, meta: dict | None) -> str:
    """Record skops bytes as a run's model artifact the way `wb.log_model` does, minus its checks."""
    _emit_artifact("evil", "model", blobs.put_bytes(ws, data, ".skops"), meta)
    run_id = wb.active_run_id()
    wb.end_run()
    return run_id


def _every_loader(ws, run_id: str, ref: str) -> list:
    return [
        lambda: wb.load_model(ref),
        lambda: wb.load_model(ref, ws),
        lambda: load_artifact(run_id, "evil", ws),
        lambda: load_version(ws, ref),
    ]


@pytest.mark.parametrize(
    "meta",
    [
        {"flavor": "sklearn-skops", "trusted_types": [RUNSTRING]},  # the attacker records the name
        {"flavor": "sklearn-skops", "trusted_types": []},
        {"flavor": "sklearn-skops"},  # no recorded list
        None,
    ],
    ids=["recorded", "empty", "missing", "no-meta"],
)
def test_every_load_path_refuses_a_crafted_file(ws, tmp_path, meta):
    marker = tmp_path / "pwned"
    data = sio.dumps(runstring_model(marker))
    run_id = _store_crafted_model(ws, data, meta)
    version = wb.promote(run_id, "evil", reason="stored without dump_model's checks")
    for load in _every_loader(ws, run_id, version.ref):
        with pytest.raises(UntrustedModelError, match="untrusted types: numpy.testing._private.utils.runstring"):
            load()
    with pytest.raises(UntrustedModelError):
        load_model(data, meta)
    assert not marker.exists()


def test_allowed_types_still_need_to_be_recorded(wine):
    from sklearn.ensemble import RandomForestClassifier

    X, y = wine
    data, meta = dump_model(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y))
    assert meta["trusted_types"] == ["sklearn.tree._tree.Tree"]
    for recorded in ({"trusted_types": []}, {}, None):
        with pytest.raises(UntrustedModelError, match="sklearn.tree._tree.Tree"):
            load_model(data, recorded)
    assert hasattr(load_model(data, meta), "predict_proba")


def test_crafted_tree_arrays_are_refused_at_save_and_load(wine):
    """A trusted class with out-of-range node indices would read memory out of bounds."""
    from sklearn.tree import DecisionTreeClassifier

    X, y = wine
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = 10**9
    model.tree_.__setstate__({**state, "nodes": nodes})
    assert structure_problems(model)
    with pytest.raises(UntrustedModelError, match="child indices out of range"):
        dump_model(model)
    data = sio.dumps(model)
    with pytest.raises(UntrustedModelError, match="child indices out of range"):
        load_model(data, {"trusted_types": sio.get_untrusted_types(data=data)})


def _legit_models(X: pd.DataFrame, y: pd.Series) -> dict[str, tuple[object, pd.DataFrame]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    mixed = X.assign(band=np.where(X["alcohol"] > 13, "high", "low"))
    encode = ColumnTransformer(
        [("band", OneHotEncoder(handle_unknown="ignore"), ["band"]), ("num", StandardScaler(), ["alcohol", "proline"])]
    )
    return {
        "pipeline-lr": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y), X),
        "random-forest": (RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y), X),
        "hist-gradient-boosting": (HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y), X),
        "knn": (KNeighborsClassifier().fit(X, y), X),
        "mlp": (make_pipeline(StandardScaler(), MLPClassifier(max_iter=50, random_state=0)).fit(X, y), X),
        "log1p": (make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500)).fit(X, y), X),
        "column-transformer": (make_pipeline(encode, LogisticRegression(max_iter=500)).fit(mixed, y), mixed),
    }


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_legitimate_models_round_trip_and_predict_identically(ws, wine):
    X, y = wine
    models = _legit_models(X, y)
    for name, (model, inputs) in models.items():
        wb.log_model(model, name, sample=inputs.head())
    run_id = wb.active_run_id()
    wb.end_run()
    for name, (model, inputs) in models.items():
        loaded = load_artifact(run_id, name, ws)
        np.testing.assert_array_equal(loaded.predict(inputs), model.predict(inputs), err_msg=name)
    version = wb.promote(run_id, "wine", artifact="column-transformer")
    served = load_version(ws, version.ref)
    model, inputs = models["column-transformer"]
    np.testing.assert_array_equal(served.estimator.predict(inputs), model.predict(inputs))
    np.testing.assert_array_equal(wb.load_model("wine@latest")[0].predict_proba(inputs), model.predict_proba(inputs))
