"""JUnit XML reports of pipeline runs, so Jenkins, GitLab and other CI systems show them natively.

One `<testsuite>` per pipeline run (named after the pipeline), one `<testcase>` per declared step
and one for the promotion (classname = the pipeline, time = the stage's duration in seconds):

- a step whose runs all failed: `<failure>` with the error, and the failing cell's error and
  traceback as its text;
- a promotion the gates refused: `<failure>` with every gate's verdict, also when the pipeline
  then moved the fallback alias and finished (Jenkins marks such a build unstable, not failed);
- a stage not reached because an earlier one failed, or a run the trigger skipped: `<skipped>`;
- a pipeline that could not start its stages (bad workbench.yaml, missing snapshot): one
  `<testcase name="pipeline">` with an `<error>`, JUnit's word for "could not run".

The counts Jenkins' junit plugin and GitLab's `artifacts:reports:junit` read (tests, failures,
errors, skipped, time) are on both `<testsuites>` and `<testsuite>`. Built with the standard
library's ElementTree; characters XML 1.0 cannot hold (control characters in an error message)
are dropped, so a report always parses.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ValidationError, WorkbenchError
from workbench.governance.pipelines import PipelineResult, StepResult

#: Terminal colour codes (an exception message may carry them), then characters XML 1.0 does not
#: allow (ElementTree would write them, and every parser would refuse the file).
_NOT_XML = re.compile("\x1b\\[[0-9;]*[A-Za-z]|[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MESSAGE_CHARS = 1000  # a failure message is a one-line summary; the whole story is the element's text


@dataclass
class _Case:
    name: str
    seconds: float
    outcome: str | None = None  # None (passed) | failure | error | skipped
    message: str = ""
    kind: str = ""  # the failure's `type`
    text: str = ""


def junit_report(*results: PipelineResult) -> str:
    """The JUnit XML document (UTF-8 text) for these pipeline runs: one test suite each."""
    return _document([(result.name, result.seconds, _cases(result), result) for result in results])


def junit_error_report(pipeline: str, error: WorkbenchError) -> str:
    """The report of a pipeline that could not start (unknown name, invalid file, refused
    workspace): one `pipeline` test case in error, so CI shows why instead of "no test results"."""
    text = "\n".join(part for part in (error.message, error.hint or "") if part)  # a file's problems: in the message
    case = _Case("pipeline", 0.0, "error", error.message, type(error).__name__, text)
    return _document([(pipeline, 0.0, [case], None)])


def write_junit(path: str | os.PathLike[str], report: str) -> Path:
    """Write a report atomically (a temporary file renamed over `path`, so a CI job never reads a
    half-written one), creating missing folders as `pytest --junitxml` does. The file follows the
    umask, like every file Workbench writes outside the workspace (exports, cards)."""
    out = check_report_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(report)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def check_report_path(path: str | os.PathLike[str]) -> Path:
    """Refuse a report path that cannot be a file, before a pipeline runs for minutes first."""
    out = Path(path).expanduser().absolute()
    if out.is_dir():
        raise ValidationError(f"The JUnit report path {out} is a folder.", "Name a file, e.g. reports/pipeline.xml.")
    for folder in (out.parent, *out.parent.parents):
        if folder.exists():
            if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
                raise ValidationError(f"Cannot write the JUnit report {out}: {folder} is not a writable folder.",
                                      "Choose a path in a folder you can write to.")  # fmt: skip
            break
    return out


def _cases(result: PipelineResult) -> list[_Case]:
    stages = [*result.steps, *([result.promotion] if result.promotion else [])]
    cases = [_case(result, stage) for stage in stages]
    broken = result.status == "failed" and not any(c.outcome == "failure" for c in cases)
    if broken:  # failed outside any stage (an input snapshot not found): say so, or the report looks green
        cases.insert(0, _Case("pipeline", 0.0, "error", result.message, "WorkbenchError", result.message))
    return cases


def _case(result: PipelineResult, stage: StepResult) -> _Case:
    case = _Case(stage.label, stage.seconds)
    error = stage.error or {}
    if stage.status == "skipped":
        why = result.message if result.status == "skipped" else "not reached: an earlier stage failed"
        case.outcome, case.message = "skipped", why
    elif stage.status == "refused":
        gates = error.get("gates") or []
        case.outcome, case.kind, case.message = "failure", "GateRefused", error.get("message", "")
        # Not the error's hint: it offers `promote --force`, which a pipeline run does not have.
        case.text = "\n".join(f"{'passed' if g['passed'] else 'REFUSED'}: {g['gate']}: {g['detail']}" for g in gates)
    elif stage.status == "failed":
        case.outcome, case.message = "failure", error.get("message", "")
        case.kind = error.get("ename") or "WorkbenchError"
        cell = error.get("cell_index")
        where = f"run {error['run_id']}" + (f", cell {cell}" if cell is not None else "") if error.get("run_id") else ""
        failure = f"{error.get('ename', '')}: {error.get('evalue', '')}" if error.get("ename") else ""
        case.text = "\n".join(part for part in (case.message, error.get("hint") or "", where, failure,
                                                "\n".join(error.get("traceback") or [])) if part)  # fmt: skip
    elif stage is result.promotion and result.promoted and result.promoted.get("refused"):
        promoted, target = result.promoted, stage.label.rsplit("@", 1)[-1]
        case.outcome, case.kind = "failure", "GateRefused"
        case.message = (f"gates refused {target}; {promoted['model']}@{promoted['version']} "
                        f"went to {promoted['alias']} instead")  # fmt: skip
        case.text = "\n".join(f"REFUSED: {detail}" for detail in promoted["refused"])
    return case


def _document(suites: list[tuple[str, float, list[_Case], PipelineResult | None]]) -> str:
    root = ET.Element("testsuites", name="workbench pipeline")
    for name, seconds, cases, result in suites:
        suite = ET.SubElement(root, "testsuite", name=_clean(name))
        _counts(suite, cases, seconds)
        if result is not None:
            _properties(suite, result)
        for case in cases:
            element = ET.SubElement(suite, "testcase", classname=_clean(name), name=_clean(case.name),
                                    time=_seconds(case.seconds))  # fmt: skip
            if case.outcome == "skipped":
                ET.SubElement(element, "skipped", message=_one_line(case.message))
            elif case.outcome:
                outcome = ET.SubElement(element, case.outcome, message=_one_line(case.message), type=_clean(case.kind))
                outcome.text = _clean(case.text or case.message)
        if result is not None and result.message:
            ET.SubElement(suite, "system-out").text = _clean(f"{result.status}: {result.message}")
    _counts(root, [c for s in suites for c in s[2]], sum(s[1] for s in suites))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _counts(element: ET.Element, cases: list[_Case], seconds: float) -> None:
    element.set("tests", str(len(cases)))
    for outcome, attribute in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        element.set(attribute, str(sum(c.outcome == outcome for c in cases)))
    element.set("time", _seconds(seconds))


def _properties(suite: ET.Element, result: PipelineResult) -> None:
    values = {"status": result.status, "pipeline_run": result.pipeline_run or "",
              "selected_run": result.selected_run or "",
              **{f"input.{name}": ref for name, ref in result.inputs.items()}}  # fmt: skip
    if result.promoted:
        values["promoted"] = f"{result.promoted['model']}@{result.promoted['version']} as {result.promoted['alias']}"
    properties = ET.SubElement(suite, "properties")
    for key, value in values.items():
        if value:
            ET.SubElement(properties, "property", name=key, value=_clean(str(value)))


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _one_line(text: str) -> str:
    line = " ".join(_clean(text).split())
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 1] + "…"
