"""Model cards: what a model version is, where it came from and how well it did.

Built only from the registry's copy of the run's facts (and the run, when it still exists, for
code version and notebook), as Markdown for terminals and repositories, and as standalone HTML.
Extra sections (explanations, fairness) are added by whoever computed them, as run artifacts
named `card/<section>.md`, so this module does not need to know about them.
"""

from __future__ import annotations

import html
from typing import Any

from workbench.errors import NotFoundError
from workbench.models.registry import ModelVersion, get_version
from workbench.runs.store import Run, get_run, load_artifact
from workbench.workspace import Workspace, current_workspace


def _facts(version: ModelVersion, run: Run | None) -> list[tuple[str, str]]:
    facts = [
        ("Model", f"{version.name} version {version.version}"),
        ("Aliases", ", ".join(version.aliases) or "none"),
        ("Registered", f"{version.created_at:%Y-%m-%d %H:%M} UTC by {version.creator}"),
        ("Reason", version.reason or ""),
        ("Estimator", str(version.meta.get("class", ""))),
        ("Classes", ", ".join(map(str, version.meta.get("classes") or [])) or "n/a"),
        ("Training run", version.run_id),
        ("Training data", ", ".join(version.inputs) or "not recorded"),
    ]
    if run is not None:
        commit = f"{run.git_commit[:10]}{' (dirty)' if run.git_dirty else ''}" if run.git_commit else "not in git"
        facts += [("Notebook", run.notebook or ""), ("Code version", commit), ("Python", run.python_version or "")]
    return [(k, v) for k, v in facts if v]


def _extra_sections(run: Run | None, ws: Workspace) -> list[tuple[str, str]]:
    if run is None:
        return []
    sections = []
    for artifact in run.artifacts:
        if artifact.name.startswith("card/") and artifact.kind == "text":
            title = artifact.name.removeprefix("card/").rsplit(".", 1)[0].replace("_", " ").capitalize()
            sections.append((title, str(load_artifact(run, artifact.name, ws))))
    return sections


def _optional_run(run_id: str, ws: Workspace) -> Run | None:
    try:
        return get_run(run_id, ws)
    except NotFoundError:
        return None


def model_card(ref: str, fmt: str = "markdown", ws: Workspace | None = None) -> str:
    """The card of model version `ref` as Markdown (`fmt="markdown"`) or standalone HTML."""
    ws = ws or current_workspace()
    version = get_version(ref, ws)
    run = _optional_run(version.run_id, ws)
    facts = _facts(version, run)
    metrics = sorted((k, v) for k, v in version.metrics.items() if v is not None)
    params = sorted(version.params.items())
    schema = version.schema or []
    extra = _extra_sections(run, ws)
    if fmt == "html":
        return _html(version, facts, metrics, params, schema, extra)
    lines = [f"# Model card: {version.ref}", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts]
    lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics] or ["| (none) | |"]
    lines += ["", "## Parameters", "", "| parameter | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in params] or ["| (none) | |"]
    lines += ["", "## Input schema", "", "| column | dtype |", "| --- | --- |"]
    lines += [f"| {c['name']} | {c['dtype']} |" for c in schema] or ["| (not recorded) | |"]
    for title, text in extra:
        lines += ["", f"## {title}", "", text.strip()]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _html(version: ModelVersion, facts: list, metrics: list, params: list, schema: list, extra: list) -> str:
    def table(headers: tuple[str, str], rows: list[tuple[Any, Any]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join(f"<tr><td>{html.escape(str(a))}</td><td>{html.escape(_fmt(b))}</td></tr>" for a, b in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    parts = [
        f"<h1>Model card: {html.escape(version.ref)}</h1>",
        "<ul>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in facts) + "</ul>",
        "<h2>Metrics</h2>", table(("metric", "value"), metrics),
        "<h2>Parameters</h2>", table(("parameter", "value"), params),
        "<h2>Input schema</h2>", table(("column", "dtype"), [(c["name"], c["dtype"]) for c in schema]),
    ]  # fmt: skip
    for title, text in extra:
        parts += [f"<h2>{html.escape(title)}</h2>", f"<pre>{html.escape(text)}</pre>"]
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{border:1px solid #ccc;padding:2px 8px}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(version.ref)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")  # fmt: skip
