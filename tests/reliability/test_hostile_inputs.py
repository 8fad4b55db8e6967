"""Hostile input to runs, models and the model server: clear errors, nothing escapes the workspace.

Random and malicious text goes into the run filter language, notebook parameter values, model
references and artifact names; malformed and oversized bodies go to a real model server on
loopback; a skops file that needs untrusted types goes to the model loader. Every one of them
must end in a `WorkbenchError` (or a 4xx answer), never another exception, a 5xx, a dropped
table or a file outside the workspace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_notebook

import workbench as wb
from workbench.catalog import connect
from workbench.errors import InvalidNameError, ValidationError, WorkbenchError
from workbench.names import NAME_PATTERN, parse_ref
from workbench.runs.params import coerce_text, validate_params

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FILTER_WORDS = ["and ", "or ", "not ", "like ", "in ", "is ", "null", "params.", "metrics.", "tags.", "status"]
FILTER_ALPHABET = st.sampled_from(list("abcmetricsparamstag._ =!<>'\"`()%,-0123456789eE;*/\\\n\t") + FILTER_WORDS)
INJECTIONS = [
    "params.x = '1'; DROP TABLE runs; --",
    "params.x = '1' OR 1=1",
    "params.x = '' OR '1'='1'",
    "tags.`a'; DELETE FROM run_params; --` = 'b'",
    'metrics.`x") OR (1=1` > 0',
    "status = 'finished') OR (1=1",
    "params.x in ('a'); DROP TABLE runs; --')",
    "params.x like '%' UNION SELECT * FROM runs --",
    "experiment = 'x' /* comment */ OR 1=1",
]


@pytest.fixture()
def some_runs(ws):
    for n in range(2):
        wb.log_param("x", str(n))
        wb.log_metric("m", n)
        wb.set_tag("team", "a")
        wb.end_run()
    return ws


def _tables(ws) -> dict[str, int]:
    with connect(ws) as con:
        names = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in names}


# Filters over the two runs of `some_runs` (x = "0" / "1", m = 0 / 1, team a) with the runs each
# selects, by x: valid input that must be accepted and answered right, mixed into the noise.
VALID_PREDICATES = [
    ("metrics.m >= 1", {"1"}), ("metrics.m < 1", {"0"}), ("params.x = '0'", {"0"}), ("params.x != '0'", {"1"}),
    ("params.x in ('0', '1')", {"0", "1"}), ("tags.team = 'a'", {"0", "1"}), ("tags.team like 'b%'", set()),
    ("metrics.m is null", set()), ("status = 'finished'", {"0", "1"}),
]  # fmt: skip
VALID_FILTERS = st.recursive(
    st.sampled_from(VALID_PREDICATES),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda t: (f"({t[0][0]} and {t[1][0]})", t[0][1] & t[1][1])),
        st.tuples(inner, inner).map(lambda t: (f"({t[0][0]} or {t[1][0]})", t[0][1] | t[1][1])),
        inner.map(lambda t: (f"not {t[0]}", {"0", "1"} - t[1])),
    ),
    max_leaves=4,
)


def test_random_filters_raise_only_validation_errors(some_runs):
    """Noise is refused with a ValidationError or accepted; valid filters mixed in must be accepted
    and select the right runs, so a filter parser that refuses everything fails here."""
    seen = {"inputs": 0, "accepted": 0}

    @FAST
    @given(st.one_of(st.text(max_size=80), st.lists(FILTER_ALPHABET, max_size=25).map("".join),
                     VALID_FILTERS))  # fmt: skip
    def check(generated):
        text, expected = generated if isinstance(generated, tuple) else (generated, None)
        seen["inputs"] += 1
        try:
            table = wb.runs(filter=text)
        except ValidationError:
            assert expected is None, f"the valid filter {text!r} was refused"
            return
        seen["accepted"] += 1
        assert len(table) <= 2
        if expected is not None:
            assert (set(table["params.x"]) if len(table) else set()) == expected, text

    check()
    assert seen["accepted"] >= 0.1 * seen["inputs"], seen


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_in_filters_matches_nothing_and_tables_survive(some_runs, text):
    before = _tables(some_runs)
    try:
        matched = wb.runs(filter=text)
    except ValidationError as exc:
        assert str(exc)
    else:
        assert matched.empty, f"{text!r} matched {len(matched)} runs"
    assert _tables(some_runs) == before


NOTEBOOK = new_notebook(cells=[new_code_cell(
    "n = 1\nlr = 0.1\nname = 'x'\nflag = True\nitems = [1]\nconf = {'a': 1}\nanything = None",
    metadata={"tags": ["parameters"]})])  # fmt: skip
TYPES = ["int", "float", "str", "bool", "list", "dict", "any"]


def _has_type(value, type_name: str) -> bool:
    """Whether `value` is what a parameter of `type_name` (the type of its default) may hold."""
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return type_name == "any" or isinstance(value, {"str": str, "bool": bool, "list": list, "dict": dict}[type_name])


KEYS = st.text(alphabet="abcxyz", min_size=1, max_size=3)
VALUE_TEXTS = st.one_of(  # text that is a valid value of some type, mixed into random text
    st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["true", "False", "yes", "off", "1", "0"]), st.lists(st.integers(), max_size=3).map(json.dumps),
    st.dictionaries(KEYS, st.integers(), max_size=2).map(json.dumps),
)  # fmt: skip


def test_random_parameter_text_coerces_or_raises_validation_error():
    """Text for a parameter becomes a value of the parameter's type or a ValidationError; a share
    of the inputs for typed parameters (not str, which takes any text as it is) must convert, so
    a converter that refuses everything fails here."""
    seen = {"inputs": 0, "accepted": 0}

    @FAST
    @given(st.sampled_from(TYPES), st.one_of(st.text(max_size=60), VALUE_TEXTS))
    def check(type_name, raw):
        typed = type_name != "str"
        seen["inputs"] += typed
        try:
            value = coerce_text("p", raw, type_name)
        except ValidationError:
            assert typed, f"{type_name} refused {raw!r}"
            return
        seen["accepted"] += typed
        assert _has_type(value, type_name), (type_name, raw, value)
        assert type_name != "str" or value == raw

    check()
    assert seen["accepted"] >= 0.1 * seen["inputs"], seen


ANY_VALUES = st.one_of(
    st.text(max_size=40), VALUE_TEXTS, st.integers(), st.floats(), st.none(), st.booleans(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
TYPED_VALUES = {  # a value of each type, as Python or as command-line text
    "int": st.one_of(st.integers(), st.integers().map(str)), "float": st.one_of(st.floats(), st.floats().map(repr)),
    "str": st.text(max_size=10), "bool": st.one_of(st.booleans(), st.sampled_from(["true", "no"])),
    "list": st.one_of(st.lists(st.integers(), max_size=3), st.just("[1, 2]")),
    "dict": st.one_of(st.dictionaries(KEYS, st.integers(), max_size=2), st.just("{a: 1}")), "any": ANY_VALUES,
}  # fmt: skip
DECLARED = {"n": "int", "lr": "float", "name": "str", "flag": "bool", "items": "list", "conf": "dict",
            "anything": "any"}  # the parameters cell of NOTEBOOK, by type


def test_random_parameter_values_validate_or_raise_validation_error():
    """Values (or, from the command line, text) for a declared parameter validate to its type or
    raise a ValidationError; a share must validate, so a validator refusing everything fails."""
    seen = {"inputs": 0, "accepted": 0}

    @FAST
    @given(st.sampled_from(sorted(DECLARED)), st.data(), st.booleans())
    def check(name, data, from_text):
        value = data.draw(st.one_of(ANY_VALUES, TYPED_VALUES[DECLARED[name]]), label="value")
        typed = DECLARED[name] not in ("str", "any")
        seen["inputs"] += typed
        try:
            result = validate_params(NOTEBOOK, {name: value}, from_text=from_text)
        except ValidationError:
            return
        seen["accepted"] += typed
        assert list(result) == [name] and _has_type(result[name], DECLARED[name]), (name, value, result)

    check()
    assert seen["accepted"] >= 0.05 * seen["inputs"], seen  # about 20% in practice


@pytest.mark.parametrize("raw", ["[" * 5000 + "]" * 5000, "&a [*a, *a]",
                                 "!!python/object/apply:os.system ['id']", "{a: " * 3000,
                                 "1e99999", "9" * 5000, "\x00", "!!binary AAAA"])  # fmt: skip
def test_nasty_yaml_parameter_text(raw):
    try:
        value = coerce_text("p", raw, "any")
    except ValidationError:
        return
    assert not callable(value)


VALID_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True)


def test_model_refs_parse_or_raise_invalid_name():
    """`name@spec` parses to a safe name and a positive version or valid alias, or raises
    InvalidNameError; valid references mixed in must parse, so a parser refusing all fails."""
    seen = {"inputs": 0, "accepted": 0}

    @FAST
    @given(st.one_of(st.text(max_size=40), VALID_NAMES),
           st.one_of(st.text(max_size=20), st.integers(-3, 10**11), VALID_NAMES))  # fmt: skip
    def check(name, spec):
        seen["inputs"] += 1
        try:
            ref = parse_ref(f"{name}@{spec}", "model", allow_alias=True)
        except InvalidNameError:
            return
        seen["accepted"] += 1
        assert NAME_PATTERN.match(ref.name) and ".." not in ref.name
        assert (ref.version is None) or ref.version > 0
        assert ref.alias is None or NAME_PATTERN.match(ref.alias)

    check()
    assert seen["accepted"] >= 0.15 * seen["inputs"], seen


def _tree(root: Path, skip: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if skip not in p.parents and p != skip}


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "/etc/passwd", "a/../../b", "..", "a/./b/../..", "C:\\x", "a\\..\\b", "a\x00b", "x" * 300,
     "~/.ssh/id_rsa", "a//b", "./a"],
)  # fmt: skip
def test_artifact_names_with_traversal_are_refused(ws, tmp_path, name):
    source = tmp_path / "payload.txt"
    source.write_text("secret")
    outside = _tree(tmp_path, ws.root)
    wb.log_param("p", 1)
    run_id = wb.active_run_id()
    with pytest.raises(ValidationError):
        wb.log_artifact(source, name)
    with pytest.raises(ValidationError):
        wb.log_text("secret", name)
    with pytest.raises(WorkbenchError):
        wb.log_model(object(), name)
    wb.end_run()
    assert _tree(tmp_path, ws.root) == outside, "something was written outside the workspace"
    assert not Path("/etc/passwd").read_text().startswith("secret")
    assert not (tmp_path.parent / "etc").exists()
    assert wb.get_run(run_id).artifacts == []


def test_symlinked_artifact_is_refused(ws, tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("data")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    outside_link = tmp_path / "escape.txt"
    outside_link.symlink_to("/etc/hostname")
    wb.log_param("p", 1)
    run_id = wb.active_run_id()
    for path in (link, outside_link):
        with pytest.raises(ValidationError, match="symbolic link"):
            wb.log_artifact(path)
    wb.end_run()
    assert wb.get_run(run_id).artifacts == []


# ------------------------------------------------------------------------------------------
# the model server


@pytest.fixture()
def server(ws, wine_frame):
    from model_fixtures import train_run

    wb.snapshot("wine", wine_frame)
    wb.promote(train_run(C=1.0), "wine")
    with wb.serve("wine@production", log_predictions=False) as running, httpx.Client(base_url=running.url,
                                                                                      timeout=60) as http:  # fmt: skip
        yield http


FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]
ROW = {"alcohol": 13.0, "malic_acid": 2.0, "color_intensity": 5.0, "proline": 700.0}
MALFORMED: list = [  # fmt: skip
    (b"{", "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"null", "application/json"),
    (b"123", "application/json"),
    (b'"a string"', "application/json"),
    (b'{"records": "nope"}', "application/json"),
    (b'{"records": [1, 2]}', "application/json"),
    (b'{"records": [{"alcohol": NaN, "malic_acid": 1, "color_intensity": 1, "proline": 1}]}', "application/json"),
    (b'{"records": [{"alcohol": 1e999, "malic_acid": 1, "color_intensity": 1, "proline": 1}]}', "application/json"),
    (b'{"records": [{"alcohol": [1], "malic_acid": 1, "color_intensity": 1, "proline": 1}]}', "application/json"),
    (
        b'{"records": [{"alcohol": {"a": 1}, "malic_acid": 1, "color_intensity": 1, "proline": 1}]}',
        "application/json",
    ),  # fmt: skip
    (b'{"columns": {"alcohol": [1, 2], "malic_acid": [1]}}', "application/json"),
    (b'{"dataframe_split": {"columns": ["alcohol"], "data": [[1, 2]]}}', "application/json"),
    (b'{"dataframe_split": {"columns": [[1]], "data": [[1]]}}', "application/json"),
    (b'{"records": [{"1": 1}], "columns": 5}', "application/json"),
    (b"alcohol,malic_acid\n1,2,3,4,5\n", "text/csv"),
    (b"\x00\x01\x02", "text/csv"),
    (b'"unterminated\n1,2', "text/csv"),
    (b"alcohol,malic_acid,color_intensity,proline\n1,2,3,abc\n", "text/csv"),
    (b"alcohol,alcohol,color_intensity,proline\n1,2,3,4\n", "text/csv"),
    (b",,,\n,,,\n", "text/csv"),
    (b"a" * 100, "application/xml"),
    (b" " * 10, "application/json"),
]


@pytest.mark.parametrize("body,content_type", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_bodies_get_a_4xx_never_a_5xx(server, body, content_type):
    answer = server.post("/predict", content=body, headers={"content-type": content_type})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert answer.json()["error"]


def test_oversized_payload_is_413(server):
    big = json.dumps({"records": [ROW] * 150_000}).encode()
    assert len(big) > 8 * 1024 * 1024
    answer = server.post("/predict", content=big, headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert server.post("/predict", json={"records": [ROW]}).status_code == 200  # still serving


FEATURE_VALUES = st.floats(-1e4, 1e4, allow_nan=False)
VALID_ROWS = st.lists(st.fixed_dictionaries({name: FEATURE_VALUES for name in FEATURES}), min_size=1, max_size=5)
VALID_BODIES = st.one_of(  # (body, content type, rows): requests a working server must answer with 200
    VALID_ROWS.map(lambda rows: (json.dumps({"records": rows}).encode(), "application/json", len(rows))),
    VALID_ROWS.map(lambda rows: (("\n".join([",".join(FEATURES)] + [",".join(repr(r[f]) for f in FEATURES)
                                                                     for r in rows]) + "\n").encode(),
                                 "text/csv", len(rows))),
)  # fmt: skip
RANDOM_BODIES = st.tuples(
    st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)),
    st.sampled_from(["application/json", "text/csv", "application/csv", "text/plain", ""]),
    st.none(),
)


def test_random_bodies_never_get_a_5xx(server):
    """Random bytes get an answer below 500; valid bodies mixed in must get their predictions, so
    a server refusing every request (4xx) fails here too."""
    seen = {"inputs": 0, "accepted": 0}

    @settings(max_examples=150, deadline=None)
    @given(st.one_of(RANDOM_BODIES, VALID_BODIES))
    def check(generated):
        body, content_type, rows = generated
        seen["inputs"] += 1
        answer = server.post("/predict", content=body, headers={"content-type": content_type} if content_type else {})
        assert answer.status_code < 500, (body, content_type, answer.text[:300])
        if rows is not None:
            assert answer.status_code == 200 and len(answer.json()["predictions"]) == rows, (body, answer.text[:300])
        seen["accepted"] += answer.status_code == 200

    check()
    assert seen["accepted"] >= 0.3 * seen["inputs"], seen


# ------------------------------------------------------------------------------------------
# skops files with untrusted types


def test_skops_file_with_untrusted_types_is_refused(ws, tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    from workbench.models.serialization import UntrustedModelError, load_model

    marker = tmp_path / "pwned"
    evil = FunctionTransformer(func=os.system)  # loading would hand `os.system` to the caller
    data = sio.dumps(evil)
    needed = sio.get_untrusted_types(data=data)
    assert needed
    for meta in (None, {"trusted_types": needed}, {"trusted_types": []}):
        with pytest.raises(UntrustedModelError, match="untrusted types"):
            load_model(data, meta)
    with pytest.raises(UntrustedModelError):
        load_model(b"not a zip file at all")
    with pytest.raises(UntrustedModelError):
        load_model(b"PK\x03\x04" + os.urandom(200))
    assert not marker.exists()


def test_notebook_fixture_is_valid():
    nbformat.validate(NOTEBOOK)
