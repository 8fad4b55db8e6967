"""Model cards: what a model version is, where it came from and how well it did.

Built only from the registry's copy of the run's facts (and the run, when it still exists, for
code version and notebook), as Markdown for terminals and repositories, and as standalone HTML
rendered from that Markdown. Extra sections (explanations, fairness) are added by whoever
computed them, as run artifacts named `card/<section>.md`, so this module does not need to know
about them.

Almost everything on a card is user text (promotion reasons, parameter values, class labels,
column names, fairness group labels), and cards are published: pasted into pull requests, wikis
and CI pages. So user text is escaped for Markdown (`md_text`), extra sections are made inert
(no raw HTML, no links), and the HTML card comes from a real CommonMark renderer with raw HTML
turned off, so nothing on a card can run script or smuggle a link into whatever shows it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt

from workbench import blobs
from workbench.errors import NotFoundError
from workbench.markdown import inert_section, md_text
from workbench.models.registry import ModelVersion, get_version
from workbench.remote.dispatch import remote_capable
from workbench.runs.lifecycle import given_params
from workbench.runs.store import Run, get_run, load_artifact
from workbench.workspace import Workspace, current_workspace

#: What keeps the HTML card self-contained and inert even if something slipped through.
#: Metrics `workbench explain` logs per feature; the card's Explainability section shows them.
IMPORTANCE_PREFIX = "explain.importance."
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    "th{background:#f4f4f4}code{background:#f4f4f4;padding:0 .2em}"
)


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


def notebook_defaults(run: Run | None, ws: Workspace) -> dict[str, Any]:
    """The parameters cell's defaults of the notebook the run executed (its stored copy).

    A run records the parameters it was given; the ones it left at their defaults are part of the
    model just as much, so the card shows both.
    """
    if run is None or not run.notebook_blob:
        return {}
    import nbformat

    from workbench.runs.params import notebook_parameters

    source = blobs.read_verified(ws, run.notebook_blob, what=f"notebook content of run {run.run_id}")
    declared = notebook_parameters(nbformat.reads(source.decode(), as_version=4))
    return {name: spec["default"] for name, spec in declared.items()}


@remote_capable("model_card")
def model_card(ref: str, fmt: str = "markdown", ws: Workspace | None = None) -> str:
    """The card of model version `ref` as Markdown (`fmt="markdown"`) or standalone HTML."""
    ws = ws or current_workspace()
    version = get_version(ref, ws)
    run = _optional_run(version.run_id, ws)
    given = given_params(ws, run.run_id) if run is not None else None
    markdown = card_markdown(version, run, _extra_sections(run, ws), notebook_defaults(run, ws),
                             set(given) if given is not None else None)  # fmt: skip
    return card_html(version.ref, markdown) if fmt == "html" else markdown


def card_markdown(version: ModelVersion, run: Run | None = None, extra: Sequence[tuple[str, str]] = (),
                  defaults: dict[str, Any] | None = None, given: set[str] | None = None) -> str:  # fmt: skip
    """The Markdown card: facts, metrics, effective parameters, input schema, then the extra sections.

    Per-feature importances are left to the Explainability section that explains them.
    """
    lines = [f"# Model card: {md_text(version.ref)}", ""]
    lines += [f"- **{k}**: {md_text(v)}" for k, v in _facts(version, run)]
    metrics = sorted((k, _fmt(v)) for k, v in version.metrics.items()
                     if v is not None and not k.startswith(IMPORTANCE_PREFIX))  # fmt: skip
    lines += _table("Metrics", ("metric", "value"), metrics, "(none)")
    rows = _effective_params(version.params, defaults or {}, given)
    lines += _table("Parameters", ("parameter", "value"), rows, "(none)")
    schema = [(c.get("name", ""), c.get("dtype", "")) for c in version.schema or []]
    lines += _table("Input schema", ("column", "dtype"), schema, "(not recorded)")
    for title, text in extra:
        lines += ["", f"## {md_text(title)}", "", inert_section(text).strip()]
    return "\n".join(lines) + "\n"


def _effective_params(
    params: dict[str, Any], defaults: dict[str, Any], given: set[str] | None
) -> list[tuple[str, str]]:
    """Every parameter the run used, each marked as given ("set") or left at the notebook's default.

    `given` is None for runs recorded before runs kept that list: they recorded only what they were
    given, and the notebook's other defaults are added from its stored copy.
    """
    if given is None and not defaults:
        return [(name, str(value)) for name, value in sorted(params.items())]
    given = set(params) if given is None else given
    rows = [(name, f"{value} ({'set' if name in given else 'default'})") for name, value in sorted(params.items())]
    return rows + [(name, f"{value} (default)") for name, value in defaults.items() if name not in params]


def _table(title: str, headers: tuple[str, str], rows: Sequence[tuple[Any, Any]], empty: str) -> list[str]:
    """A titled two-column Markdown table with every cell escaped."""
    lines = ["", f"## {title}", "", f"| {headers[0]} | {headers[1]} |", "| --- | --- |"]
    return lines + ([f"| {md_text(a)} | {md_text(b)} |" for a, b in rows] or [f"| {empty} | |"])


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def card_html(title: str, markdown: str) -> str:
    """A standalone HTML page of the Markdown card, rendered by CommonMark with raw HTML off.

    markdown-it also refuses `javascript:`/`vbscript:`/`data:` link targets; the page's Content
    Security Policy allows no script and no remote resource at all, as a last line of defence.
    """
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>Model card: {html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{renderer.render(markdown)}</body></html>\n"
    )
