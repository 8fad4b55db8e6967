"""scikit-learn autologging: interactive (in this process) and in tracked runs (real kernels).

In-process tests log to the interactive run the first autologged call starts (as in JupyterLab);
the tracked-run tests execute small notebooks with papermill, autologging on by default and off
with `--no-autolog`.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import run_cli_in_process
from sklearn.base import ClassifierMixin, TransformerMixin
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.model_selection._search import BaseSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import workbench as wb
from workbench.autologging import patches, state
from workbench.autologging.kernel import KERNEL_ARGUMENT, kernel_arguments


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture()
def autolog(ws):
    """Autologging on, into a fresh interactive run; off (and that run ended) afterwards."""
    state._warned.clear()
    wb.autolog()
    yield wb.autolog
    wb.autolog(False)
    wb.end_run()


def _pipeline(C: float = 1.0) -> Pipeline:
    return Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(C=C, max_iter=500))])


def _finished_run():
    run_id = wb.active_run_id()
    wb.end_run()
    return wb.get_run(run_id)


def _steps(run, metric: str) -> list[tuple[int, float]]:
    history = wb.metric_history(run.run_id, metric)
    return list(zip(history["step"].tolist(), history["value"].tolist(), strict=True))


# -- fits ---------------------------------------------------------------------------------------------


def test_a_pipeline_fit_records_flattened_params_and_its_training_score(autolog, iris):
    X, y = iris
    pipe = _pipeline(C=0.5)
    assert pipe.fit(X, y) is pipe
    run = _finished_run()

    assert run.kind == "interactive" and run.status == "finished"
    assert run.params["clf__C"] == 0.5 and run.params["clf__max_iter"] == 500
    assert run.params["scaler__with_mean"] is True and run.params["clf"] == "LogisticRegression"
    assert run.params["steps"] == "[('scaler', StandardScaler), ('clf', LogisticRegression)]"
    assert "C" not in run.params  # the pipeline's own fits of its steps are not logged as fits
    assert _steps(run, "training_score") == [(0, pytest.approx(pipe.score(X, y)))]


def test_a_grid_search_records_best_params_best_score_and_every_candidate(autolog, iris):
    X, y = iris
    search = GridSearchCV(_pipeline(), {"clf__C": [0.01, 1.0, 10.0]}, cv=3).fit(X, y)
    run = _finished_run()

    assert run.params["best_clf__C"] == search.best_params_["clf__C"]
    assert run.params["estimator__clf__C"] == 1.0 and run.params["param_grid"] == "{'clf__C': [0.01, 1.0, 10.0]}"
    assert run.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    candidates = _steps(run, "cv_mean_test_score")
    assert [step for step, _ in candidates] == [0, 1, 2]
    assert [value for _, value in candidates] == pytest.approx(list(search.cv_results_["mean_test_score"]))
    table = wb.load_artifact(run, "cv_results.csv").splitlines()
    assert table[0].startswith("step,param_clf__C,mean_test_score") and len(table) == 4
    # 9 candidate fits + the refit happened inside the search: one fit logged, the search's
    assert "clf__C" not in run.params and len(_steps(run, "training_score")) == 1


def test_a_second_search_continues_the_series_and_keeps_its_own_table(autolog, iris):
    X, y = iris
    GridSearchCV(_pipeline(), {"clf__C": [0.1, 1.0]}, cv=2).fit(X, y)
    second = GridSearchCV(_pipeline(), {"clf__C": [0.5, 5.0]}, cv=2).fit(X, y)
    run = _finished_run()

    candidates = _steps(run, "cv_mean_test_score")
    assert [step for step, _ in candidates] == [0, 1, 2, 3]
    assert [value for _, value in candidates[2:]] == pytest.approx(list(second.cv_results_["mean_test_score"]))
    assert wb.load_artifact(run, "cv_results-2.csv").splitlines()[1].startswith("2,0.5,")
    assert run.params["best_clf__C"] == second.best_params_["clf__C"]  # the last search's


# -- metric and score calls ---------------------------------------------------------------------------


def test_metric_calls_and_scores_are_logged_as_step_series(autolog, iris):
    import sklearn.metrics
    from sklearn.metrics import accuracy_score, f1_score

    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    predicted = model.predict(X)
    first, second = accuracy_score(y, predicted), accuracy_score(y, predicted[::-1])
    assert f1_score(y, predicted, average=None).shape == (3,)  # an array: not a metric, not logged
    macro = f1_score(y, predicted, average="macro")
    score = model.score(X, y)
    unnamed = accuracy_score(list(y), predicted)  # data given as an expression
    run = _finished_run()

    assert _steps(run, "accuracy_score_y") == [(0, pytest.approx(first)), (1, pytest.approx(second))]
    assert _steps(run, "f1_score_y") == [(0, pytest.approx(macro))]
    assert _steps(run, "LogisticRegression_score_X") == [(0, pytest.approx(score))]
    # the training score's own accuracy computation is not a call of the notebook's
    assert len(_steps(run, "accuracy_score_y")) == 2 and len(_steps(run, "training_score")) == 1
    assert "accuracy_score" not in run.metrics  # never the bare name a notebook may log itself
    assert _steps(run, "accuracy_score_unnamed") == [(0, pytest.approx(unnamed))]
    # joblib ships the original function to worker processes, not the logging one
    original = patches._originals[(sklearn.metrics, "accuracy_score")]
    assert pickle.loads(pickle.dumps(sklearn.metrics.accuracy_score)) is original


def test_log_models_logs_a_loadable_model_with_its_input_schema(autolog, iris):
    X, y = iris
    autolog(log_models=True)
    pipe = _pipeline().fit(X, y)
    run = _finished_run()

    artifact = run.artifact("Pipeline")
    assert artifact.kind == "model"
    assert [column["name"] for column in artifact.meta["schema"]] == list(X.columns)
    loaded = wb.load_artifact(run, "Pipeline")
    assert np.array_equal(loaded.predict(X), pipe.predict(X))


# -- never changing what the code computes ------------------------------------------------------------


def test_a_failing_fit_raises_unchanged_and_the_run_keeps_what_it_could_record(autolog, iris):
    X, y = iris
    broken = X.copy()
    broken.iloc[0, 0] = np.nan
    wb.autolog(False)
    with pytest.raises(ValueError) as without:
        LogisticRegression(C=0.25).fit(broken, y)
    wb.autolog()
    with pytest.raises(ValueError) as caught:
        LogisticRegression(C=0.25).fit(broken, y)
    assert type(caught.value) is type(without.value) and str(caught.value) == str(without.value)
    LogisticRegression(C=0.75, max_iter=500).fit(X, y)  # autologging still works after the failure
    run = _finished_run()

    assert run.params["C"] == 0.75 and run.status == "finished"
    assert len(_steps(run, "training_score")) == 1  # the failed fit has no score


def test_autologging_failures_are_one_warning_and_never_the_users_error(autolog, iris, monkeypatch):
    from workbench.autologging import record

    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(record.tracking, "log_param", broken)
    X, y = iris
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = LogisticRegression(max_iter=500).fit(X, y)
        LogisticRegression(max_iter=500).fit(X, y)
    messages = [str(w.message) for w in caught if issubclass(w.category, state.AutologWarning)]
    assert messages == ["Autologging could not record the estimator's parameters: OSError: disk full"]
    assert first.score(X, y) > 0.9


def test_predictions_and_fitted_state_are_identical_with_and_without_autologging(autolog, iris):
    X, y = iris
    with_autolog = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    linear_with = _pipeline().fit(X, y)
    wb.autolog(False)
    without = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    linear_without = _pipeline().fit(X, y)

    assert np.array_equal(with_autolog.predict_proba(X), without.predict_proba(X))
    assert np.array_equal(with_autolog.feature_importances_, without.feature_importances_)
    assert np.array_equal(linear_with[-1].coef_, linear_without[-1].coef_)
    assert np.array_equal(linear_with.predict(X), linear_without.predict(X))


def test_turning_it_off_restores_every_original_exactly(ws):
    import sklearn.metrics

    watched = [(LogisticRegression, "fit"), (ClassifierMixin, "score"), (TransformerMixin, "fit_transform"),
               (Pipeline, "fit"), (Pipeline, "score"), (BaseSearchCV, "fit"), (BaseSearchCV, "score")]  # fmt: skip
    before = {key: key[0].__dict__[key[1]] for key in watched}
    metric, meta_path = sklearn.metrics.accuracy_score, list(sys.meta_path)

    wb.autolog()
    assert all(key[0].__dict__[key[1]] is not before[key] for key in watched)
    assert sklearn.metrics.accuracy_score is not metric and len(sys.meta_path) == len(meta_path) + 1
    assert hasattr(_pipeline(), "score") and not hasattr(Pipeline([("s", StandardScaler())]), "score")
    wb.autolog(False)

    assert all(key[0].__dict__[key[1]] is before[key] for key in watched)
    assert sklearn.metrics.accuracy_score is metric and sys.meta_path == meta_path
    assert not patches._originals and wb.active_run_id() is None  # and turning it on and off logged nothing


def test_it_imports_nothing_and_patches_scikit_learn_when_the_notebook_imports_it():
    code = """
import sys
import workbench as wb
wb.autolog()
assert "sklearn" not in sys.modules and "workbench.tracking" not in sys.modules
from sklearn.naive_bayes import GaussianNB
from sklearn.metrics import r2_score
assert GaussianNB.__dict__["fit"].__code__.co_name == "autologged_fit"
assert type(r2_score).__name__ == "LoggedMetric"
assert type(sys.modules["sklearn.naive_bayes"].__loader__).__name__ != "_WatchedLoader"
wb.autolog(False)
assert GaussianNB.__dict__["fit"].__code__.co_name != "autologged_fit" and "workbench.tracking" not in sys.modules
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_only_an_ipykernel_kernel_of_an_autologging_run_gets_the_extension():
    class Spec:
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]

    class OtherSpec:
        argv = ["R", "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"]

    assert kernel_arguments({"WORKBENCH_AUTOLOG": "1"}, Spec()) == [KERNEL_ARGUMENT]
    assert kernel_arguments({"WORKBENCH_AUTOLOG": "0"}, Spec()) == []
    assert kernel_arguments({"WORKBENCH_AUTOLOG": "1"}, OtherSpec()) == []


# -- tracked runs --------------------------------------------------------------------------------------

TRAIN = """
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV
X, y = load_iris(return_X_y=True, as_frame=True)
search = GridSearchCV(LogisticRegression(max_iter=max_iter), {"C": [0.1, 1.0]}, cv=3).fit(X, y)
model = LogisticRegression(C=0.5, max_iter=max_iter).fit(X, y)
print(accuracy_score(y, model.predict(X)))
"""


@pytest.fixture()
def train_nb(notebook):
    return notebook("train", "C = 2.0  # not the estimator's C\nmax_iter = 300", TRAIN)


@pytest.mark.slow
def test_a_tracked_run_autologs_by_default_without_importing_workbench(ws, train_nb):
    run = wb.run(train_nb, {"max_iter": 400})

    assert run.status == "finished", run.error
    assert run.params["C"] == 2.0  # a notebook parameter is never overwritten by an estimator's
    assert run.params["max_iter"] == 400 and run.params["best_C"] == 1.0 and run.params["solver"] == "lbfgs"
    assert {"best_cv_score", "cv_mean_test_score", "training_score", "accuracy_score_y"} <= set(run.metrics)
    assert [step for step, _ in _steps(run, "training_score")] == [0, 1]  # the search, then the model
    assert len(_steps(run, "cv_mean_test_score")) == 2


@pytest.mark.slow
def test_no_autolog_runs_the_notebook_without_it(ws, train_nb, capsys):
    proc = run_cli_in_process(capsys, "run", str(train_nb), "--no-autolog", "--json")
    assert proc.returncode == 0, proc.stderr
    import json

    run = wb.get_run(json.loads(proc.stdout)["run_id"])
    assert run.status == "finished" and run.params == {"C": 2.0, "max_iter": 300} and run.metrics == {}
    assert [artifact.name for artifact in run.artifacts] == ["stdout"]  # no cv_results.csv
    again = wb.rerun(run.run_id)  # a rerun does as the original did
    assert again.status == "finished" and again.metrics == {} and again.params == run.params


def test_the_workspace_setting_is_the_default_and_a_call_overrides_it(ws):
    from workbench.runs.launch import fast_options

    assert fast_options(ws, None)["autolog"] is True and fast_options(ws, None, False)["autolog"] is False
    ws.set_setting("autolog", False)
    assert fast_options(ws, None)["autolog"] is False and fast_options(ws, None, True)["autolog"] is True


def test_the_choice_is_kept_with_a_queued_run(ws, train_nb):
    from workbench.runs.request import prepare, queue, reopen

    record = queue(ws, prepare(train_nb, autolog=False))
    prepared, _record, _pins = reopen(ws, record.run_id)
    assert prepared.autolog is False
