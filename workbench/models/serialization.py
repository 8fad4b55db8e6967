"""Saving and loading models with skops, never with raw pickle.

A model is stored as skops bytes plus metadata: the flavor, the input schema taken from a sample
(column names and dtypes, which the server uses to validate requests), and `trusted_types`, the
types the file needs beyond what skops trusts by default.

Trust rule (the same at save and at load, decided by `refused_types`):

* skops' own defaults (builtin containers and primitives, numpy dtypes and ufuncs, scipy ufuncs,
  every scikit-learn estimator class, a few loss/link classes) are always trusted: skops itself
  never reports them.
* Anything else a file needs must be named, *exactly*, in `ALLOWED_TYPES` below (a reviewed list
  of scikit-learn's internal classes that fitted estimators hold, a handful of side-effect-free
  functions, and the xgboost/lightgbm wrappers) **and** in the file's recorded `trusted_types`.
  There are no prefixes: `numpy.testing._private.utils.runstring` is as untrusted as
  `builtins.eval`, whatever module a class claims to live in. Names are compared as text; no
  module named by a file is ever imported to decide whether to trust it.
* A missing or empty recorded list trusts nothing beyond skops' defaults. Types are recorded
  only by `dump_model`, which has refused anything outside the allow-list, so a legitimate file
  always carries its list.

`dump_model` (behind `wb.log_model`) refuses at save time exactly what loading would refuse,
with the same message, so a model that cannot be served is never logged.

Trusting a class lets skops build it from the file's data without running its code, but some
scikit-learn classes index raw arrays without bounds checks (skops refuses `Tree` and
`TreePredictor` by default for that reason: a crafted file could crash the process or read
memory it should not). After building the object, and before logging one, `structure_problems`
therefore checks the node and index arrays of the tree and neighbour-search structures (child
indices in range and pointing forward, so traversal ends; split features within the width the
owning estimator validates; sample indices and node ranges in range). This closes the known
crafted-array routes; it is not a proof that every scikit-learn internal is memory-safe on
arbitrary data (e.g. an ensemble's declared input width is not cross-checked with its members'),
which is why the blob store also refuses any file whose bytes do not match the hash it was
logged under, and why only people allowed to log models should be able to write the workspace.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import skops.io as sio

from workbench.errors import WorkbenchError

FLAVOR = "sklearn-skops"


def _both_precisions(module: str, *names: str) -> set[str]:
    """`module.Name64` and `module.Name32` for each name (scikit-learn compiles both)."""
    return {f"{module}.{name}{bits}" for name in names for bits in ("64", "32")}


#: scikit-learn's internal classes that fitted estimators hold, as reported by
#: `skops.io.get_untrusted_types` for: forests, gradient boosting (classic and histogram),
#: isolation forest, KNN (kd/ball tree, common metrics), MLP (adam/sgd), Tweedie GLMs,
#: calibrated classifiers, Gaussian processes, voting/stacking, ColumnTransformer pipelines
#: with column selectors, and search objects with their default scorer. Data-holding classes
#: only: none of them runs code from the file when it is built.
SKLEARN_CLASSES = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn._loss.loss.HalfTweedieLoss",
        "sklearn._loss.loss.HalfTweedieLossIdentity",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
        "sklearn.gaussian_process.kernels.ConstantKernel",
        "sklearn.gaussian_process.kernels.DotProduct",
        "sklearn.gaussian_process.kernels.ExpSineSquared",
        "sklearn.gaussian_process.kernels.Exponentiation",
        "sklearn.gaussian_process.kernels.Matern",
        "sklearn.gaussian_process.kernels.Product",
        "sklearn.gaussian_process.kernels.RBF",
        "sklearn.gaussian_process.kernels.RationalQuadratic",
        "sklearn.gaussian_process.kernels.Sum",
        "sklearn.gaussian_process.kernels.WhiteKernel",
        "sklearn.compose._column_transformer.make_column_selector",
        "sklearn.utils._bunch.Bunch",
        "sklearn.metrics._scorer._PassthroughScorer",
        "sklearn.model_selection._split.KFold",
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.model_selection._split.GroupKFold",
        "sklearn.model_selection._split.StratifiedGroupKFold",
        "sklearn.model_selection._split.ShuffleSplit",
        "sklearn.model_selection._split.StratifiedShuffleSplit",
        "sklearn.model_selection._split.TimeSeriesSplit",
        "sklearn.model_selection._split.RepeatedKFold",
        "sklearn.model_selection._split.RepeatedStratifiedKFold",
    }
    # Distance metrics of the neighbour trees. Not PyFuncDistance (it wraps an arbitrary Python
    # function) and not Mahalanobis (its matrix is not checked against the data width on load).
    | _both_precisions(
        "sklearn.metrics._dist_metrics",
        "EuclideanDistance",
        "SEuclideanDistance",
        "ManhattanDistance",
        "ChebyshevDistance",
        "MinkowskiDistance",
        "HaversineDistance",
        "HammingDistance",
        "CanberraDistance",
        "BrayCurtisDistance",
        "JaccardDistance",
        "MatchingDistance",
        "DiceDistance",
        "KulsinskiDistance",
        "RogersTanimotoDistance",
        "RussellRaoDistance",
        "SokalMichenerDistance",
        "SokalSneathDistance",
    )
)

#: Plain data types fitted estimators keep (e.g. `make_column_selector(dtype_include=object)`
#: stores the `object` type; encoders keep dtypes). Building them runs no code from the file.
DATA_CLASSES = frozenset(
    {
        "builtins.object",
        "builtins.slice",
        "collections.OrderedDict",
        "collections.defaultdict",
        "numpy.dtype",
        "numpy.number",
        "numpy.integer",
        "numpy.floating",
    }
)

#: The only functions trusted beyond skops' defaults (numpy/scipy ufuncs). Each is a pure
#: computation a standard estimator stores as a parameter; none touches files, processes or
#: Python's import or eval machinery, so placing one anywhere in a file gives an attacker nothing.
FUNCTIONS = frozenset(
    {
        # HistGradientBoosting* with categorical features: its preprocessor is
        # FunctionTransformer(functools.partial(check_array, ...)). A partial only binds
        # arguments; skops audits the function it wraps like any other.
        "functools.partial",
        "sklearn.utils.validation.check_array",
        # Score functions of SelectKBest / SelectPercentile (f_classif is the default).
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.feature_selection._mutual_info.mutual_info_classif",
        "sklearn.feature_selection._mutual_info.mutual_info_regression",
    }
)

#: xgboost and lightgbm scikit-learn wrappers and the booster each holds. These libraries are
#: not installed in Workbench's test environment, so this short list is written from their
#: documented class paths rather than measured; any other type of theirs is refused.
BOOSTING_CLASSES = frozenset(
    {
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
        "xgboost.sklearn.XGBRanker",
        "xgboost.sklearn.XGBRFClassifier",
        "xgboost.sklearn.XGBRFRegressor",
        "xgboost.core.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "lightgbm.sklearn.LGBMRanker",
        "lightgbm.basic.Booster",
    }
)

#: Every type Workbench may trust beyond skops' defaults (exact names, never prefixes).
ALLOWED_TYPES = SKLEARN_CLASSES | DATA_CLASSES | FUNCTIONS | BOOSTING_CLASSES


class UntrustedModelError(WorkbenchError):
    """A model file needs types Workbench does not trust; it is not loaded."""


def refused_types(needed: Iterable[str], recorded: Iterable[str] | None) -> list[str]:
    """The types of `needed` that may not be trusted: off the allow-list or not recorded.

    `needed` is what skops reports beyond its defaults; `recorded` is the file's metadata
    (None or empty: nothing beyond the defaults is trusted).
    """
    granted = set(recorded or ()) & ALLOWED_TYPES
    return sorted(t for t in set(needed) if t not in granted)


def untrusted_error(refused: list[str]) -> UntrustedModelError:
    """The one refusal message, shared by `dump_model` and `load_model`."""
    return UntrustedModelError(
        f"Refusing a model that needs untrusted types: {', '.join(refused)}.",
        "Log a model built from scikit-learn estimators and their parameters (for a search, log "
        "search.best_estimator_); custom classes and functions cannot be served safely.",
    )


def unsafe_structure_error(problems: list[str]) -> UntrustedModelError:
    """The refusal for a model whose tree or index arrays are out of range (save and load)."""
    return UntrustedModelError(
        f"Refusing a model with inconsistent internal arrays: {'; '.join(problems[:3])}.",
        "Log the model again from a normally fitted scikit-learn estimator.",
    )


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


def _needed_types(data: bytes) -> list[str]:
    """Types the file needs beyond skops' defaults; unreadable bytes are refused."""
    try:
        return sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises many types for damaged or foreign files
        raise UntrustedModelError(
            f"Not a readable skops model file: {exc}", "Log the model again with wb.log_model()."
        ) from exc


def dump_model(model: Any, sample: Any = None) -> tuple[bytes, dict[str, Any]]:
    """skops bytes of `model` and its metadata (flavor, class, schema, types to trust).

    Refuses, with `load_model`'s message, any model that `load_model` would refuse.
    """
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
    needed = _needed_types(data)
    refused = refused_types(needed, needed)
    if refused:
        raise untrusted_error(refused)
    problems = structure_problems(model)
    if problems:
        raise unsafe_structure_error(problems)
    meta: dict[str, Any] = {
        "flavor": FLAVOR,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "trusted_types": sorted(needed),
        "schema": input_schema(sample) if sample is not None else None,
    }
    if hasattr(model, "classes_"):
        meta["classes"] = [_plain(c) for c in model.classes_]
    return data, meta


def _plain(value: Any) -> Any:
    """A class label as JSON data (numpy scalars and, for multi-output models, arrays)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def load_model(data: bytes, meta: dict[str, Any] | None = None) -> Any:
    """Load skops bytes, trusting only allow-listed types the file's metadata recorded.

    Every loader (registry, run artifacts, model server) comes through here.
    """
    needed = _needed_types(data)
    refused = refused_types(needed, (meta or {}).get("trusted_types"))
    if refused:
        raise untrusted_error(refused)
    try:
        model = sio.loads(data, trusted=needed)
    except Exception as exc:  # a file whose content does not fit the types it names
        raise UntrustedModelError(
            f"Not a readable skops model file: {exc}", "Log the model again with wb.log_model()."
        ) from exc
    problems = structure_problems(model)
    if problems:
        raise unsafe_structure_error(problems)
    return model


# ------------------------------------------------------------------------------------------
# Structural checks of the classes skops warns about (see the module docstring)


def _walk(root: Any) -> Iterator[tuple[Any, int | None]]:
    """Every object reachable from `root` (attributes, containers, object arrays), with the
    `n_features_in_` of the nearest estimator holding it: the width its input validation admits
    (a pipeline's own width says nothing about what a later step receives)."""
    import numpy as np

    seen: set[int] = set()
    stack: list[tuple[Any, int | None]] = [(root, None)]
    while stack:
        obj, width = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type, np.generic)) or obj is None:
            continue
        seen.add(id(obj))
        yield obj, width
        if isinstance(obj, dict):
            children: Iterable[Any] = obj.values()
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = obj
        elif isinstance(obj, np.ndarray):
            children = obj.ravel().tolist() if obj.dtype == object else ()
        else:
            attrs = getattr(obj, "__dict__", None)
            children = attrs.values() if isinstance(attrs, dict) else ()
            own = attrs.get("n_features_in_") if isinstance(attrs, dict) else None
            if isinstance(own, (int, np.integer)):
                width = int(own)
        stack.extend((child, width) for child in children)


def _forward_children(left: Any, right: Any, is_split: Any, count: int) -> bool:
    """Split nodes point to two later nodes inside the array (so any walk ends in range)."""
    import numpy as np

    index = np.arange(count)[is_split]
    return bool(
        np.all(left[is_split] > index)
        and np.all(right[is_split] > index)
        and np.all(left[is_split] < count)
        and np.all(right[is_split] < count)
    )


def _decision_tree_problem(tree: Any, width: int | None) -> str | None:
    count = int(tree.node_count)
    if not 0 < count <= int(tree.capacity):
        return f"a decision tree claims {count} nodes in storage for {tree.capacity}"
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    is_leaf = left == -1
    if not ((right == -1) == is_leaf).all() or not _forward_children(left, right, ~is_leaf, count):
        return "a decision tree has child indices out of range"
    limit = int(tree.n_features) if width is None else min(int(tree.n_features), width)
    used = feature[~is_leaf]
    if used.size and (used.min() < 0 or used.max() >= limit):
        return f"a decision tree splits on a feature beyond the {limit} inputs"
    return None


def _histogram_tree_problem(predictor: Any, width: int | None) -> str | None:
    nodes = predictor.nodes
    is_split = nodes["is_leaf"] == 0
    if not _forward_children(nodes["left"], nodes["right"], is_split, len(nodes)):
        return "a histogram gradient boosting tree has child indices out of range"
    used = nodes["feature_idx"][is_split]
    if used.size and (used.min() < 0 or (width is not None and used.max() >= width)):
        return "a histogram gradient boosting tree splits on a feature beyond its inputs"
    categorical = nodes["bitset_idx"][is_split & (nodes["is_categorical"] != 0)]
    bitsets = min(len(predictor.raw_left_cat_bitsets), len(predictor.binned_left_cat_bitsets))
    if categorical.size and categorical.max() >= bitsets:
        return "a histogram gradient boosting tree points at a missing category set"
    return None


def _neighbors_tree_problem(tree: Any, width: int | None) -> str | None:
    data, idx_array, node_data, node_bounds = tree.get_arrays()
    samples, count = len(data), len(node_data)
    state = tree.__getstate__()
    if len(idx_array) != samples or (samples and (idx_array.min() < 0 or idx_array.max() >= samples)):
        return "a neighbours tree indexes samples out of range"
    start, end = node_data["idx_start"], node_data["idx_end"]
    if count and (start.min() < 0 or end.max() > samples or (start > end).any()):
        return "a neighbours tree has node ranges out of range"
    inner = node_data["is_leaf"] == 0
    if inner.any() and 2 * int(inner.nonzero()[0].max()) + 2 >= count:
        return "a neighbours tree has child nodes out of range"
    if node_bounds.shape[1:] != (count, data.shape[1]) or state[6] != count:
        return "a neighbours tree has bounds that do not match its nodes"
    weights = state[12]
    if weights is not None and len(weights) != samples:
        return "a neighbours tree has sample weights that do not match its samples"
    if width is not None and data.shape[1] != width:
        return "a neighbours tree's data does not match the model's inputs"
    return None


def _checkers() -> list[tuple[type, Any]]:
    """The checked classes, imported from scikit-learn itself (never from names in a file)."""
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.neighbors import BallTree, KDTree
    from sklearn.tree._tree import Tree

    return [
        (Tree, _decision_tree_problem),
        (TreePredictor, _histogram_tree_problem),
        (KDTree, _neighbors_tree_problem),
        (BallTree, _neighbors_tree_problem),
    ]


def structure_problems(model: Any) -> list[str]:
    """Why the model's tree or index arrays could make prediction read out of range (none: [])."""
    checkers = _checkers()
    problems: list[str] = []
    for obj, width in _walk(model):
        for cls, check in checkers:
            if isinstance(obj, cls):
                try:
                    problem = check(obj, width)
                except (AttributeError, KeyError, ValueError, TypeError, IndexError) as exc:
                    problem = f"a {cls.__name__} could not be checked ({exc})"
                if problem:
                    problems.append(problem)
    return problems
