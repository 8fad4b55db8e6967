"""`workbench pipeline run --junit FILE`: real pipeline runs (papermill) reported as JUnit XML, read
back the way Jenkins' junit plugin and GitLab's `artifacts:reports:junit` read it: the counts on
<testsuites>/<testsuite>, each <testcase>'s name, classname and time, and <failure>/<error>/<skipped>
with their message and text. Exit codes: 0 finished, 1 a step failed, 2 refused by the gates or
could not start."""

from __future__ import annotations

import os
import stat
import textwrap
import xml.etree.ElementTree as ET

import pytest
from conftest import run_cli_in_process

import workbench as wb
from workbench.errors import NotFoundError
from workbench.governance.junit import junit_error_report, junit_report
from workbench.governance.pipelines import PipelineResult, StepResult

cli = run_cli_in_process

PIPELINES = """
pipelines:
  broken:
    steps:
      - notebook: prep.ipynb
      - notebook: fit.ipynb
      - {notebook: prep.ipynb, name: after}
    promote: {model: wine}
  gated:
    steps: [{notebook: fit.ipynb, params: {fail: false}}]
    promote: {model: wine, alias: production, fallback_alias: null}
  fallback:
    steps: [{notebook: fit.ipynb, params: {fail: false}}]
    promote: {model: wine, alias: production, fallback_alias: staging}
  no-data:
    inputs: {fail: nowhere}
    steps: [{notebook: fit.ipynb}]
"""
FIT_CELLS = (
    "import workbench as wb\nfrom sklearn.dummy import DummyClassifier\nimport pandas as pd",
    # A control character and markup in the message: the report must still parse and keep the rest.
    'if fail:\n    raise ValueError("bad <data> & \\x1b[31mcolours\\x1b[0m \\x07here")',
    'X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})\nmodel = DummyClassifier().fit(X, [0, 1, 0, 1])\n'
    'wb.log_metric("accuracy", model.score(X, [0, 1, 0, 1]))\nwb.log_model(model, "wine", sample=X.head(2))',
)


def report(path) -> ET.Element:
    root = ET.parse(path).getroot()  # also proves it is well-formed XML
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    for element, cases in [(root, root.iter("testcase")), *((s, s.findall("testcase")) for s in suites)]:
        cases = list(cases)
        assert int(element.get("tests")) == len(cases)
        for tag, attribute in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            assert int(element.get(attribute)) == sum(c.find(tag) is not None for c in cases), attribute
        assert float(element.get("time")) >= 0
    for case in root.iter("testcase"):
        assert case.get("name") and case.get("classname") and float(case.get("time")) >= 0
    return root


def cases(root: ET.Element) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in root.iter("testcase")}


@pytest.mark.slow
def test_junit_report_of_failed_refused_and_fallback_runs(ws, tmp_path, notebook, capsys):
    notebook("prep", None, "import workbench as wb\nwb.log_metric('prepared', 1)")
    notebook("fit", "fail = True", *FIT_CELLS)
    (tmp_path / "workbench.yaml").write_text(textwrap.dedent(PIPELINES).lstrip())
    wb.set_gates("wine", {"metrics": {"accuracy": {"min": 0.99}}})  # a dummy model scores 0.5

    # A failed step: the failing cell's error, later stages skipped; exit 1; folders created.
    out = tmp_path / "reports" / "broken.xml"
    failed = cli(capsys, "pipeline", "run", "broken", "--junit", str(out))
    assert failed.returncode == 1, failed.stderr
    root = report(out)
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "broken" and (suite.get("tests"), suite.get("failures")) == ("4", "1")
    assert suite.get("skipped") == "2" and suite.get("errors") == "0"
    found = cases(root)
    assert list(found) == ["prep", "fit", "after", "promote wine@production"]
    assert {c.get("classname") for c in found.values()} == {"broken"}
    assert found["prep"].find("*") is None and float(found["prep"].get("time")) > 0
    failure = found["fit"].find("failure")
    assert failure.get("type") == "ValueError"
    assert failure.get("message").startswith("Step 2 (fit) failed: no run finished. bad <data> & ")
    assert failure.get("message").endswith("bad <data> & colours here")  # colour codes, a BEL: dropped
    assert "ValueError: bad <data> & colours here" in failure.text
    run_id = wb.runs(filter="tags.pipeline = 'broken'").query("status == 'failed'")["run_id"].item()
    assert f"run {run_id}, cell " in failure.text and "ValueError: bad <data> & " in failure.text
    assert "raise ValueError" in failure.text  # the traceback
    assert found["after"].find("skipped").get("message") == "not reached: an earlier stage failed"
    assert found["promote wine@production"].find("skipped") is not None
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~current_umask()
    assert [p.name for p in out.parent.iterdir()] == ["broken.xml"]  # no temporary file left

    # Gates refuse with no fallback: the run failed, exit 2, every verdict in the failure.
    refused = cli(capsys, "pipeline", "run", "gated", "--junit", str(out))
    assert refused.returncode == 2, refused.stderr
    found = cases(report(out))
    failure = found["promote wine@production"].find("failure")
    assert failure.get("type") == "GateRefused" and "production" in failure.get("message")
    assert failure.text == "REFUSED: accuracy >= 0.99: accuracy = 0.5"
    assert found["fit"].find("*") is None

    # Gates refuse, the fallback alias takes it: the pipeline finished (exit 0), the refusal is a failure.
    fell_back = cli(capsys, "pipeline", "run", "fallback", "--junit", str(out))
    assert fell_back.returncode == 0, fell_back.stderr
    root = report(out)
    failure = cases(root)["promote wine@production"].find("failure")
    assert failure.get("message") == "gates refused production; wine@1 went to staging instead"
    assert failure.text.startswith("REFUSED: accuracy = 0.5")
    properties = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert properties["status"] == "finished" and properties["promoted"] == "wine@1 as staging"

    # An input snapshot is missing: a failed pipeline run (exit 1); the reason as an error, the step skipped.
    no_data = cli(capsys, "pipeline", "run", "no-data", "--junit", str(out))
    assert no_data.returncode == 1 and "nowhere" in no_data.stderr
    root = report(out)
    assert [(c.get("name"), c[0].tag) for c in root.iter("testcase")] == [("pipeline", "error"), ("fit", "skipped")]
    assert "nowhere" in root.find(".//error").get("message")

    # It could not start: still a report, with the reason as an error; exit 2.
    missing = cli(capsys, "pipeline", "run", "nightly", "--junit", str(out))
    assert missing.returncode == 2 and "nightly" in missing.stderr
    (case,) = report(out).iter("testcase")
    assert case.get("name") == "pipeline" and case.get("classname") == "nightly"
    assert "nightly" in case.find("error").get("message")

    folder = cli(capsys, "pipeline", "run", "gated", "--junit", str(tmp_path))  # refused before running
    assert folder.returncode == 2 and "is a folder" in folder.stderr
    assert len(wb.audit_log(target="pipeline:gated")) == 1


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_skipped_runs_and_failures_outside_steps():
    """A trigger that did not fire: every stage skipped with its reason (Jenkins needs a test case, or it
    fails the build for an empty report). A failure before any step (a missing input snapshot): an error."""
    skipped = PipelineResult("nightly", None, "skipped", message="wine is still at wine@3, already used",
                             steps=[StepResult("train", "train.ipynb", [], None, status="skipped")])  # fmt: skip
    root = ET.fromstring(junit_report(skipped))
    (case,) = root.iter("testcase")
    assert case.find("skipped").get("message") == "wine is still at wine@3, already used"
    assert (root.get("tests"), root.get("skipped"), root.get("failures")) == ("1", "1", "0")

    no_input = PipelineResult("nightly", "r1", "failed", message="No snapshot named 'wine'.",
                              steps=[StepResult("train", "train.ipynb", [], None, status="skipped")])  # fmt: skip
    root = ET.fromstring(junit_report(no_input, skipped))
    assert [s.get("name") for s in root.findall("testsuite")] == ["nightly", "nightly"]
    first = root.find("testsuite")
    assert [(c.get("name"), c[0].tag) for c in first.iter("testcase")] == [("pipeline", "error"), ("train", "skipped")]
    assert (first.get("errors"), root.get("tests"), root.get("skipped")) == ("1", "3", "2")

    report_ = ET.fromstring(junit_error_report("x", NotFoundError("No pipeline 'x'\x00.", "Run 'pipeline list'.")))
    error = report_.find("testsuite/testcase/error")
    assert error.get("message") == "No pipeline 'x'." and error.text == "No pipeline 'x'.\nRun 'pipeline list'."
