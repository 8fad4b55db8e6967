"""Model registry: promote, aliases, rollback, gates, model cards, skops safety, audit."""

from __future__ import annotations

import pytest
from model_fixtures import train_run

import workbench as wb
from workbench.models.serialization import UntrustedModelError, load_model


@pytest.fixture()
def wine_ws(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    return ws


def test_promote_registers_versions_and_moves_the_alias(wine_ws):
    weak, strong = train_run(C=0.001), train_run(C=10.0)

    v1 = wb.promote(weak, reason="first model")
    assert (v1.ref, v1.aliases, v1.run_id, v1.inputs) == ("wine@1", ["production"], weak, ["wine@1"])
    assert [c["name"] for c in v1.schema] == ["alcohol", "malic_acid", "color_intensity", "proline"]
    v2 = wb.promote(strong, alias="production")
    assert v2.version == 2 and wb.get_model_version("wine@production").version == 2
    assert wb.get_model_version("wine@1").aliases == []

    again = wb.promote(strong, alias="staging")  # same run: same version, another alias
    assert again.version == 2 and again.aliases == ["production", "staging"]

    back = wb.rollback("wine", reason="bad canary")
    assert back.version == 1 and wb.get_model_version("wine@production").version == 1
    assert wb.rollback("wine", to=2).version == 2

    model, version = wb.load_model("wine@production")
    assert version.version == 2 and hasattr(model, "predict_proba")
    listing = wb.models()
    assert listing[0]["name"] == "wine" and listing[0]["aliases"] == {"production": 2, "staging": 2}

    actions = [e.action for e in wb.audit_log()]
    assert actions.count("alias.moved") == 5 and actions.count("model.version.created") == 2


def test_gates_refuse_with_reasons_and_are_audited(wine_ws):
    weak, strong = train_run(C=0.001), train_run(C=10.0)
    wb.set_gates("wine", {"metrics": {"accuracy": {"min": 0.5}}, "beat": {"metric": "accuracy", "mode": "max"}})

    wb.promote(strong)
    with pytest.raises(wb.GateRefused, match="beat production on accuracy") as refused:
        wb.promote(weak)
    assert [r.passed for r in refused.value.results] == [True, False]
    assert wb.get_model_version("wine@production").run_id == strong
    assert any(e.action == "gate.refused" for e in wb.audit_log())

    wb.set_gates("wine", {"metrics": {"accuracy": {"min": 0.999}}})
    with pytest.raises(wb.GateRefused, match="accuracy >= 0.999"):
        wb.promote(weak)
    forced = wb.promote(weak, force=True, reason="emergency")
    assert forced.aliases == ["production"]
    with pytest.raises(wb.ValidationError, match="must be a number"):
        wb.set_gates("wine", {"metrics": {"accuracy": {"min": "high"}}})


def test_bad_promotions_are_clear_errors(wine_ws, notebook):
    run_id = train_run()
    with pytest.raises(wb.NotFoundError):
        wb.promote("20260101-000000-0000abcd")
    with pytest.raises(wb.WorkbenchError, match="Invalid model name"):
        wb.promote(run_id, model="bad name;")
    wb.log_metric("x", 1.0)
    no_model = wb.active_run_id()
    wb.end_run()
    with pytest.raises(wb.ValidationError, match="logged no model"):
        wb.promote(no_model)
    with pytest.raises(wb.NotFoundError, match="no alias 'canary'"):
        wb.get_model_version("wine@canary") if wb.promote(run_id) else None
    with pytest.raises(wb.ValidationError, match="no earlier version"):
        wb.rollback("wine")


def test_model_card_has_lineage_metrics_and_schema(wine_ws):
    wb.promote(train_run(C=2.0), reason="baseline")
    card = wb.model_card("wine@production")
    for expected in ("# Model card: wine@1", "production", "wine@1", "accuracy", "| C | 2.0 |", "| proline | float64 |",
                     "baseline", "LogisticRegression"):  # fmt: skip
        assert expected in card or expected.replace("LogisticRegression", "Pipeline") in card, expected
    html = wb.model_card("wine@1", fmt="html")
    assert html.startswith("<!doctype html>") and "proline" in html


def test_skops_refuses_untrusted_types():
    import skops.io as sio

    data = sio.dumps({"callback": print})  # builtins.print is not data: skops lists it as untrusted
    with pytest.raises(UntrustedModelError):
        load_model(data, {"trusted_types": ["builtins.print"]})
    with pytest.raises(UntrustedModelError, match="Not a readable skops"):
        load_model(b"not a zip file")


def test_model_card_shows_effective_parameters_and_leaves_importances_to_their_section(wine_ws, notebook):
    """A run that kept the notebook's defaults used to say 'Parameters (none)'; every explain
    importance used to be a row of its own among the metrics."""
    from workbench.governance.explain import explain

    nb = notebook(
        "train", "C = 1.0\nmax_iter = 300",
        "import workbench as wb\nfrom sklearn.linear_model import LogisticRegression",
        'data = wb.load_snapshot("wine")\nX, y = data[["alcohol", "proline", "hue"]], data["target"]\n'
        "model = LogisticRegression(C=C, max_iter=max_iter).fit(X, y)\n"
        'wb.log_metric("accuracy", model.score(X, y))\nwb.log_model(model, "wine", sample=X.head())',
    )
    run = wb.run(nb, {"C": 0.5})
    assert run.status == "finished", run.error
    wb.promote(run.run_id)
    explain("wine@production", n_repeats=2, top=1)
    card = wb.model_card("wine@production")
    assert "| C | 0.5 (set) |" in card and "| max\\_iter | 300 (default) |" in card.replace("max_iter", "max\\_iter")
    metrics = card.partition("## Metrics")[2].partition("## Parameters")[0]
    assert "accuracy" in metrics and "importance" not in metrics
    assert "## Explainability" in card and "proline" in card.partition("## Explainability")[2]
