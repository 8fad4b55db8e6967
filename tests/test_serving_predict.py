"""Which input form the server hands a model: a numpy array only where it cannot change a prediction."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from workbench.serving.inputs import conform
from workbench.serving.predict import Predictor

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]


def _schema(frame: pd.DataFrame) -> list[dict[str, str]]:
    return [{"name": str(c), "dtype": str(t)} for c, t in frame.dtypes.items()]


@pytest.fixture(scope="module")
def wine() -> tuple[pd.DataFrame, pd.Series]:
    frame = load_wine(as_frame=True).frame
    return frame[FEATURES], frame["target"]


def _same_predictions(predictor: Predictor, X: pd.DataFrame) -> None:
    inputs = conform({c: X[c].tolist() for c in X.columns}, _schema(X))
    with warnings.catch_warnings(record=True) as caught:
        served = predictor.predict(inputs)
    assert not [w for w in caught if "feature names" in str(w.message)]  # the array path is not noisy
    assert served == predictor.estimator.predict(X).tolist()


@pytest.mark.parametrize(
    "model",
    [
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        RandomForestClassifier(n_estimators=5, random_state=0),
    ],
    ids=["scaler+logreg", "forest"],
)
def test_numeric_sklearn_models_get_an_array_with_identical_predictions(wine, model):
    X, y = wine
    predictor = Predictor(model.fit(X, y), _schema(X))
    assert predictor.takes_array
    _same_predictions(predictor, X)


def test_name_aware_steps_get_a_dataframe(wine):
    X, y = wine
    by_name = ColumnTransformer([("scale", StandardScaler(), ["alcohol", "proline"])], remainder="passthrough")
    model = make_pipeline(by_name, LogisticRegression(max_iter=500)).fit(X, y)
    predictor = Predictor(model, _schema(X))
    assert not predictor.takes_array
    _same_predictions(predictor, X)
    picks = make_pipeline(FunctionTransformer(lambda df: df[["alcohol"]]), LogisticRegression()).fit(X, y)
    assert not Predictor(picks, _schema(X)).takes_array


def test_pandas_output_text_columns_and_unnamed_fits_get_a_dataframe(wine):
    X, y = wine
    pandas_out = make_pipeline(StandardScaler().set_output(transform="pandas"), LogisticRegression()).fit(X, y)
    assert not Predictor(pandas_out, _schema(X)).takes_array
    unnamed = LogisticRegression(max_iter=500).fit(X.to_numpy(), y)
    assert not Predictor(unnamed, _schema(X)).takes_array
    texts = X.assign(kind=np.where(y == 0, "a", "b"))
    encoded = ColumnTransformer([("kind", OneHotEncoder(), ["kind"])], remainder="passthrough")
    with_text = make_pipeline(encoded, LogisticRegression(max_iter=500)).fit(texts, y)
    predictor = Predictor(with_text, _schema(texts))
    assert not predictor.takes_array
    _same_predictions(predictor, texts)


def test_estimators_from_other_libraries_get_a_dataframe(wine):
    X, y = wine

    class Wrapped(LogisticRegression):  # not scikit-learn's own class: its behaviour is unknown
        pass

    assert not Predictor(Wrapped(max_iter=500).fit(X, y), _schema(X)).takes_array


def test_columns_in_another_order_than_fit_get_a_dataframe(wine):
    X, y = wine
    model = LogisticRegression(max_iter=500).fit(X, y)
    assert not Predictor(model, _schema(X[list(reversed(FEATURES))])).takes_array
