"""Patching scikit-learn for autologging, and undoing it exactly.

Which methods: `fit`, `fit_transform`, `fit_predict` and `score` wherever scikit-learn defines
them (an estimator class or a mixin such as `ClassifierMixin.score`), found by walking the
subclasses of `BaseEstimator` that scikit-learn has imported so far; an `ImportWatcher` repeats the
walk when more of scikit-learn is imported. A method defined with `available_if` (a descriptor,
e.g. `Pipeline.score`) is patched through a copy of the descriptor whose `fn` is wrapped, so it stays
conditionally available. Each patched attribute's original object is kept and put back by
`unpatch`, so after `wb.autolog(False)` every class dict and `sklearn.metrics` hold exactly what
they held before.

Which calls are logged: top-level ones only. `_depth` counts autologged calls in progress in this
process (not per thread: the fits a search or an ensemble makes in its worker threads are nested
too), and a call made while one is in progress is passed straight through: a Pipeline's steps, a
search's candidates, the training score and the metric a `score` method computes are not logged
as calls of their own.

What they compute is untouched: the original runs with the caller's arguments and its result (or
exception) is returned (or raised) as it is; logging happens around it and its failures become an
`AutologWarning` (`state.guarded`).
"""

from __future__ import annotations

import copy
import functools
import inspect
import sys
import threading
from typing import Any

from workbench.autologging.imports import ImportWatcher
from workbench.autologging.state import guarded, settings

FIT_METHODS = ("fit", "fit_transform", "fit_predict")
METHODS = (*FIT_METHODS, "score")
#: `sklearn.metrics` functions whose calls are logged: every scalar score, error and loss
METRIC_SUFFIXES = ("_score", "_error", "_loss")
METRIC_NAMES = ("matthews_corrcoef",)

_depth = 0
_depth_lock = threading.Lock()
_originals: dict[tuple[Any, str], Any] = {}  # (class or module, attribute) -> what it held
_seen: set[type] = set()
_watcher: ImportWatcher | None = None


def patch() -> None:
    """Patch what scikit-learn has imported, and whatever of it is imported from now on."""
    global _watcher
    if _watcher is None:
        _watcher = ImportWatcher("sklearn", _patch_loaded)
        _watcher.install()
    _patch_loaded()


def unpatch() -> None:
    """Put back every original and stop watching imports: no trace of autologging is left."""
    global _watcher
    if _watcher is not None:
        _watcher.remove()
        _watcher = None
    for (owner, name), original in reversed(list(_originals.items())):
        setattr(owner, name, original)
    _originals.clear()
    _seen.clear()


def patched() -> bool:
    return _watcher is not None


def _patch_loaded() -> None:
    guarded("scikit-learn's classes", _patch_classes)
    guarded("scikit-learn's metrics", _patch_metrics)


def _patch_classes() -> None:
    base = sys.modules.get("sklearn.base")
    if base is None or not hasattr(base, "BaseEstimator"):
        return
    for cls in _subclasses(base.BaseEstimator):
        if cls in _seen:
            continue
        for owner in cls.__mro__:  # the class and the mixins it inherits methods from
            if owner not in _seen and owner.__module__.partition(".")[0] == "sklearn":
                _seen.add(owner)
                for name in METHODS:
                    _patch_method(owner, name)


def _subclasses(root: type) -> list[type]:
    found: dict[type, None] = {}
    todo = [root]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found[sub] = None
                todo.append(sub)
    return [cls for cls in found if cls.__module__.partition(".")[0] == "sklearn"]


def _patch_method(owner: type, name: str) -> None:
    attribute = owner.__dict__.get(name)
    if attribute is None or (owner, name) in _originals:
        return
    wrap = _fit_wrapper if name in FIT_METHODS else _score_wrapper
    if inspect.isfunction(attribute):
        replacement = wrap(attribute, name)
    elif inspect.isfunction(getattr(attribute, "fn", None)) and hasattr(attribute, "__get__"):
        replacement = copy.copy(attribute)  # `available_if`: same check, wrapped function
        replacement.fn = wrap(attribute.fn, name)
    else:
        return  # a property, classmethod or other descriptor: left alone
    _originals[(owner, name)] = attribute
    setattr(owner, name, replacement)


def _patch_metrics() -> None:
    metrics = sys.modules.get("sklearn.metrics")
    if metrics is None:
        return
    for name in getattr(metrics, "__all__", ()):
        if not (name.endswith(METRIC_SUFFIXES) or name in METRIC_NAMES) or (metrics, name) in _originals:
            continue
        function = getattr(metrics, name, None)
        if callable(function) and not isinstance(function, LoggedMetric):
            _originals[(metrics, name)] = function
            setattr(metrics, name, LoggedMetric(function, name))


def _bound(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        return _signature(function).bind_partial(None, *args, **kwargs).arguments
    except TypeError:
        return {}


@functools.lru_cache(maxsize=1024)
def _signature(function: Any) -> inspect.Signature:
    return inspect.signature(function)


def _fit_wrapper(original: Any, method: str) -> Any:
    @functools.wraps(original)
    def autologged_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _depth or _watcher is None:
            return original(self, *args, **kwargs)
        from workbench.autologging import record

        _enter()
        try:
            guarded("the estimator's parameters", record.log_params, self)  # before: kept if fit fails
            result = original(self, *args, **kwargs)
            _after_fit(self, method, _bound(original, args, kwargs))
            return result
        finally:
            _leave()

    return autologged_fit


def _after_fit(estimator: Any, method: str, arguments: dict[str, Any]) -> None:
    from workbench.autologging import record

    X, y = arguments.get("X"), arguments.get("y", arguments.get("Y"))
    if X is None:  # a first argument by another name (`raw_documents`, ...)
        X = next((value for name, value in arguments.items() if name != "self"), None)
    refit = getattr(estimator, "refit", True) if hasattr(estimator, "cv_results_") else True
    if method == "fit" and y is not None and refit is not False and hasattr(estimator, "score"):
        guarded("the training score", record.log_training_score, estimator, X, y,
                       arguments.get("sample_weight"))  # fmt: skip
    if hasattr(estimator, "cv_results_"):
        guarded("the search results", record.log_search, estimator)
    if settings.log_models:
        guarded("the model", record.log_model, estimator, X)


def _score_wrapper(original: Any, method: str) -> Any:
    @functools.wraps(original)
    def autologged_score(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = _observed(original, (self, *args), kwargs)
        if _depth == 0 and _watcher is not None and settings.log_metric_calls:
            from workbench.autologging import record

            name = record.metric_name(f"{type(self).__name__}_score", sys._getframe(1), args[0] if args else None)
            guarded("a score", record.log_metric, name, result)
        return result

    return autologged_score


def _observed(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call `function` as a nested call: what it calls in turn is not logged."""
    _enter()
    try:
        return function(*args, **kwargs)
    finally:
        _leave()


def _enter() -> None:
    global _depth
    with _depth_lock:
        _depth += 1


def _leave() -> None:
    global _depth
    with _depth_lock:
        _depth -= 1


class LoggedMetric:
    """A `sklearn.metrics` function that logs its result when called from the notebook itself.

    An object rather than a function so that pickling it (joblib sending a scorer to a worker
    process) sends the original function, by reference; `__wrapped__` keeps `inspect.signature` and
    scikit-learn's introspection working. Once autologging is off it is a plain pass-through (a
    notebook may still hold it from `from sklearn.metrics import f1_score`).
    """

    def __init__(self, function: Any, name: str) -> None:
        functools.update_wrapper(self, function)
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        original = self.__wrapped__
        if _depth or _watcher is None:
            return original(*args, **kwargs)
        result = _observed(original, args, kwargs)
        if settings.log_metric_calls:
            from workbench.autologging import record

            name = record.metric_name(self._name, sys._getframe(1), args[0] if args else kwargs.get("y_true"))
            guarded("a metric", record.log_metric, name, result)
        return result

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _identity, (self.__wrapped__,)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)


def _identity(value: Any) -> Any:
    return value
