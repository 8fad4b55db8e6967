"""Model cards are published (pull requests, wikis, CI pages): user text on them must stay text.

A real model version is built from hostile text wherever a user controls it — promotion reason,
parameter values, class labels, column names, fairness group labels — and, for fields the
tracking API validates (metric names, the creator), a hand-made registry record. The Markdown
card is then read by a permissive renderer (raw HTML on, like GitHub's) and the HTML card by an
HTML parser: no tag, attribute, link, image or extra heading may come from user text, while the
text itself must still show exactly as typed.
"""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from typing import Any

import pandas as pd
import pytest
from markdown_it import MarkdownIt

import workbench as wb
from workbench.models.card import card_html, card_markdown
from workbench.models.registry import ModelVersion

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
LINK = "[link](javascript:alert(1))"
TICKS = "`tick` *bold* _under_ ~~gone~~"
MULTILINE = "first line\n# Approved by security\n| forged | row |"
PIPES = "| pipes | in | a | cell |"
HOSTILE = [SCRIPT, IMG, LINK, TICKS, MULTILINE, PIPES]
#: Markdown token types that only user text could have produced on the card's own part.
LIVE_MARKUP = {"html_block", "html_inline", "link_open", "image", "code_inline", "em_open", "s_open", "heading_open"}
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "ul", "li", "strong", "em", "code",
                "table", "thead", "tbody", "tr", "th", "td"}  # fmt: skip


def permissive_tokens(markdown: str) -> list[Any]:
    """Every block and inline token of `markdown` as a renderer that allows raw HTML sees it."""
    tokens = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).parse(markdown)
    return [t for token in tokens for t in (token, *(token.children or []))]


def table_widths(tokens: list[Any]) -> list[list[int]]:
    """Cells per row (header row included) of each table, in order."""
    tables: list[list[int]] = []
    for token in tokens:
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            tables[-1].append(0)
        elif token.type in ("td_open", "th_open"):
            tables[-1][-1] += 1
    return tables


class Page(HTMLParser):
    """Tags, attributes and visible text of an HTML page."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_inert_html(page: str) -> Page:
    """No script, event handler, link or image anywhere in the page; only the card's own tags."""
    assert "<script" not in page.lower()
    assert not re.search(r"<[^>]*\bon\w+\s*=", page, re.IGNORECASE), "an event handler attribute"
    assert not re.search(r"<[^>]*javascript:", page, re.IGNORECASE), "a javascript: URL in a tag"
    parsed = Page(page)
    for tag, attrs in parsed.tags:
        assert tag in ALLOWED_TAGS, tag
        for name, _value in attrs:
            assert not name.startswith("on") and name not in ("href", "src"), (tag, name)
    return parsed


@pytest.fixture()
def hostile_model(ws):
    """A promoted model whose user-controlled text is all hostile, with fairness and explain sections."""
    from sklearn.linear_model import LogisticRegression

    from workbench.governance.explain import explain
    from workbench.governance.fairness import fairness

    groups = [SCRIPT, IMG, LINK, TICKS]  # the sensitive column's values become the fairness table's rows
    rows = [{"x": float(i % 2), IMG: float(i % 3), "group": groups[i % 4],
             "target": [SCRIPT, PIPES][i % 2 if i % 5 else 1 - i % 2]} for i in range(40)]  # fmt: skip
    wb.snapshot("people", pd.DataFrame(rows))
    data = wb.load_snapshot("people")
    X = data[["x", IMG]]
    model = LogisticRegression(max_iter=500).fit(X, data["target"])
    for n, text in enumerate(HOSTILE):
        wb.log_param(f"p{n}", text)
    wb.log_metric("_emph_", 0.5)  # the most a metric name can carry through the tracking API
    wb.log_metric("accuracy", float(model.score(X, data["target"])))
    wb.log_model(model, "people", sample=X.head())
    run_id = wb.active_run_id()
    wb.end_run()
    version = wb.promote(run_id, "people", reason=" ".join(HOSTILE))
    fairness(run_id, sensitive="group", positive=SCRIPT)
    explain(run_id, n_repeats=2, top=1)
    return version.ref


def test_markdown_card_escapes_user_text(hostile_model):
    card = wb.model_card(hostile_model)
    assert "\n## Fairness\n" in card and "\n## Explainability\n" in card
    own = card[: min(card.index("\n## Fairness"), card.index("\n## Explainability"))]  # what card.py wrote itself
    for raw in (SCRIPT, IMG, "<script", "<img", "| pipes |", "`tick`"):  # (links: no link token below)
        assert raw not in own, raw

    tokens = permissive_tokens(own)
    live = [t.type for t in tokens if t.type in LIVE_MARKUP - {"heading_open"}]
    assert not live, live
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["Model card: people@1", "Metrics", "Parameters", "Input schema"]
    facts = [line for line in own.splitlines() if line.startswith("- **")]
    assert sum(t.type == "strong_open" for t in tokens) == len(facts)  # only the fact labels are bold
    assert all(width == 2 for table in table_widths(tokens) for width in table)  # no pipe or newline split a cell

    everywhere = permissive_tokens(card)
    assert not [t.type for t in everywhere if t.type in ("html_block", "html_inline", "link_open", "image")]


def test_html_card_is_rendered_markdown_with_nothing_live(hostile_model):
    page = wb.model_card(hostile_model, fmt="html")
    assert page.count("<table>") == 5  # metrics, parameters, schema, fairness, explainability: real tables
    assert page.startswith("<!doctype html>") and re.search(r"<title>[^<]*people@1</title>", page)
    parsed = assert_inert_html(page)
    text = "".join(parsed.text)
    reason = " ".join(" ".join(HOSTILE).splitlines())
    assert reason in text  # shown exactly as typed, line breaks as spaces
    for value in (SCRIPT, IMG, LINK):  # the fairness group labels, as text in table cells
        assert f"<td>{value.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</td>" in page


def test_hand_made_registry_record_with_hostile_names_stays_inert():
    """Metric names, creator and schema straight from a (tampered or imported) catalog row."""
    version = ModelVersion(
        name="m", version=1, run_id="20990101-000000-deadbeef", artifact="model", blob="b",
        meta={"class": SCRIPT, "classes": [IMG, MULTILINE], "schema": [{"name": LINK, "dtype": PIPES}]},
        metrics={SCRIPT: 1.0, MULTILINE: 2.0, TICKS: 0.25}, params={IMG: LINK, PIPES: MULTILINE},
        inputs=[SCRIPT], created_at=dt.datetime(2026, 1, 1), creator=IMG, reason=TICKS, aliases=["production"],
    )  # fmt: skip
    markdown = card_markdown(version)
    tokens = permissive_tokens(markdown)
    assert not [t.type for t in tokens if t.type in LIVE_MARKUP - {"heading_open"}]
    assert sum(t.type == "heading_open" for t in tokens) == 4
    assert table_widths(tokens) == [[2, 2, 2, 2], [2, 2, 2], [2, 2]]
    text = "".join(assert_inert_html(card_html(version.ref, markdown)).text)
    for value in (SCRIPT, IMG, LINK, TICKS, PIPES):
        assert value in text, value




def test_fairness_group_labels_cannot_break_the_table(ws):
    from sklearn.linear_model import LogisticRegression

    from workbench.governance.fairness import fairness

    rows = [{"x": float(i % 2), "group": [PIPES, MULTILINE][i % 2], "target": i % 3 == 0} for i in range(20)]
    wb.snapshot("people", pd.DataFrame(rows))
    data = wb.load_snapshot("people")
    wb.log_model(LogisticRegression().fit(data[["x"]], data["target"]), "people", sample=data[["x"]].head())
    run_id = wb.active_run_id()
    wb.end_run()
    wb.promote(run_id, "people")
    fairness(run_id, sensitive="group")
    tokens = permissive_tokens(wb.model_card("people@1").partition("\n## Fairness")[2])
    assert all(width == 6 for width in table_widths(tokens)[0])
    assert not any(t.type == "heading_open" for t in tokens)
