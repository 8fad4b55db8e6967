"""Outcomes: the truth about served predictions, reported later and joined to the prediction log.

Callers report what really happened to a prediction (POST /feedback on the model server, or a
bulk file/snapshot of late labels through `wb.log_outcomes` / `workbench monitor outcomes`) by
the `request_id` the server answered with and the `row` within that request (0 for one-row
requests). Outcomes are appended as JSON lines to `outcomes/<model>/<YYYYMMDD>-<pid>.jsonl`
(one file per process and day, so no locks between processes; 0600 like the prediction log),
one line per outcome: {"at", "request_id", "row", "outcome", "source"}.

Nothing is ever dropped or rewritten, so nothing is lost; what counts is decided when reading:
- duplicate: a later outcome for a (request_id, row) that already has one. The FIRST one (by
  receipt time) wins; later ones are kept on disk and counted, never counted twice;
- unknown: an outcome whose (request_id, row) no logged prediction has (yet). It stays on disk
  and is matched once the prediction line arrives (the server writes its log once a second, a
  team server receives remote logs later), so a "late" prediction is never a lost outcome;
- pending: a served prediction with no outcome yet.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import DataSourceError, ValidationError
from workbench.names import validate_name
from workbench.permissions import make_dir, open_for_append
from workbench.remote.dispatch import remote_capable
from workbench.serving.predlog import predictions_dir
from workbench.workspace import Workspace

#: Most outcomes in one `record_outcomes` call (bulk input is recorded in chunks of this size).
MAX_ITEMS = 10_000
#: Longest text outcome accepted (outcomes are labels or values, not documents).
MAX_OUTCOME_CHARS = 1_000
SOURCES = ("feedback", "bulk")
FIELDS = ("request_id", "row", "outcome")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
JOINED_COLUMNS = ["at", "request_id", "row", "version", "shadow", "latency_ms", "prediction", "proba", "outcome",
                  "outcome_at"]  # fmt: skip
OUTCOME_COLUMNS = ["request_id", "row", "outcome", "at"]

Key = tuple[str, int]


def outcomes_dir(ws: Workspace, model: str) -> Path:
    return ws.root / "outcomes" / validate_name(model, "model name")


# ------------------------------------------------------------------------------------- validating


def check_items(
    items: Any, first: int = 0, where: str = "item", labels: dict[str, str] | None = None
) -> list[tuple[Key, Any]]:
    """`items` as checked ((request_id, row), outcome) pairs, else a ValidationError naming the first
    bad one: "Outcome item 3: ..." (`where`, numbered from `first`) and its field (`labels` give
    each field's name as the caller knows it, e.g. a column of a file)."""
    if not isinstance(items, list):
        raise ValidationError(f"Outcomes must be a list of objects, got {type(items).__name__}.",
                              'Send [{"request_id": "...", "row": 0, "outcome": ...}, ...].')  # fmt: skip
    if not items:
        raise ValidationError("No outcomes given.", 'Send at least one {"request_id": "...", "outcome": ...}.')
    if len(items) > MAX_ITEMS:
        raise ValidationError(f"{len(items):,} outcomes in one call; at most {MAX_ITEMS:,}.",
                              "Send them in batches (wb.log_outcomes splits a large table for you).")  # fmt: skip
    names = {f: f"'{f}'" for f in FIELDS} | (labels or {})
    return [_check_item(item, f"Outcome {where} {index}", names) for index, item in enumerate(items, first)]


def _check_item(item: Any, label: str, names: dict[str, str]) -> tuple[Key, Any]:
    if not isinstance(item, dict):
        raise ValidationError(f"{label} is a {type(item).__name__}, not an object.",
                              'Each outcome is {"request_id": "...", "row": 0, "outcome": ...}.')  # fmt: skip
    extra = sorted(set(item) - set(FIELDS))
    if extra:
        raise ValidationError(f"{label} has an unknown field {str(extra[0])[:40]!r}.",
                              f"The fields are {', '.join(FIELDS)} (row is optional, default 0).")  # fmt: skip
    request_id, row, outcome = item.get("request_id"), item.get("row", 0), item.get("outcome")
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise ValidationError(f"{label}: {names['request_id']} must be the request's id, at most 64 letters, digits, "
                              f"'_' or '-'; got {_shown(request_id)}.",
                              "Use the request_id the model server answered with.")  # fmt: skip
    if not isinstance(row, int) or isinstance(row, bool) or row < 0:
        raise ValidationError(f"{label}: {names['row']} must be a whole number >= 0 (the row within the request); "
                              f"got {_shown(row)}.", "Leave it out for a request of one row.")  # fmt: skip
    if not _is_scalar(outcome):
        raise ValidationError(f"{label}: {names['outcome']} must be a text, number or true/false; got "
                              f"{_shown(outcome)}.", f"Give the true label or value (numbers finite, text at most "
                              f"{MAX_OUTCOME_CHARS:,} characters).")  # fmt: skip
    return (request_id, row), outcome


def _is_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_OUTCOME_CHARS
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (bool, int))


def _shown(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"


# -------------------------------------------------------------------------------------- recording


@dataclass
class _KeyIndex:
    """The (request_id, row) keys in a folder of JSON-lines files, read incrementally: each refresh
    reads only the whole lines appended since the last one, so counting at record time stays cheap
    while the logs grow. A file that shrank or vanished (a new workspace at the same path) makes it
    start over."""

    folder: Path
    offsets: dict[str, int] = field(default_factory=dict)
    keys: set[Key] = field(default_factory=set)

    def refresh(self) -> set[Key]:
        paths = sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else []
        sizes = {p.name: p.stat().st_size for p in paths}
        if any(sizes.get(name, -1) < offset for name, offset in self.offsets.items()):
            self.offsets, self.keys = {}, set()
        for path in paths:
            start = self.offsets.get(path.name, 0)
            if sizes[path.name] > start:
                with open(path, "rb") as fh:
                    fh.seek(start)
                    data = fh.read(sizes[path.name] - start)
                end = data.rfind(b"\n") + 1  # a line being written is read next time, whole
                self.keys.update(key for line in data[:end].splitlines() if (key := _line_key(line)))
                self.offsets[path.name] = start + end
        return self.keys


def _line_key(line: bytes) -> Key | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("request_id"), str):
        return None
    row = record.get("row", 0)
    return record["request_id"], row if isinstance(row, int) else 0


@dataclass
class _ModelState:
    lock: threading.Lock
    outcomes: _KeyIndex
    predictions: _KeyIndex


_states: dict[str, _ModelState] = {}
_states_guard = threading.Lock()


def _state(ws: Workspace, model: str) -> _ModelState:
    folder = outcomes_dir(ws, model)
    with _states_guard:
        if str(folder) not in _states:
            _states[str(folder)] = _ModelState(threading.Lock(), _KeyIndex(folder),
                                               _KeyIndex(predictions_dir(ws, model)))  # fmt: skip
        return _states[str(folder)]


def record_outcomes(ws: Workspace, model: str, items: list[dict[str, Any]], source: str = "feedback") -> dict[str, int]:
    """Append outcomes (all of them, in one write, or none: every item is checked first).

    The counts: `recorded` (lines appended), of those `duplicates` (their (request_id, row) had an
    outcome already, from earlier or earlier in `items`: kept, never counted again) and `unknown`
    (new ones no logged prediction has so far: matched when it arrives)."""
    return _append(ws, model, check_items(items), source)


def _append(ws: Workspace, model: str, checked: list[tuple[Key, Any]], source: str) -> dict[str, int]:
    if source not in SOURCES:
        raise ValidationError(f"Unknown outcome source {source!r}.", f"Use one of {', '.join(SOURCES)}.")
    state = _state(ws, model)
    at = datetime.now(timezone.utc).isoformat()
    payload = "".join(json.dumps({"at": at, "request_id": key[0], "row": key[1], "outcome": outcome,
                                  "source": source}) + "\n" for key, outcome in checked).encode()  # fmt: skip
    with state.lock:
        known, predicted = state.outcomes.refresh(), state.predictions.refresh()
        new: set[Key] = set()
        for key, _ in checked:
            if key not in known and key not in new:
                new.add(key)
        folder = make_dir(state.outcomes.folder)
        fd = open_for_append(folder / f"{datetime.now(timezone.utc):%Y%m%d}-{os.getpid()}.jsonl")
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)  # acknowledged means on disk: an outcome is never lost
        finally:
            os.close(fd)
        known |= new
    return {"recorded": len(checked), "duplicates": len(checked) - len(new),
            "unknown": sum(key not in predicted for key in new)}  # fmt: skip


# ---------------------------------------------------------------------------------------- reading


def _jsonl_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("*.jsonl")) if folder.is_dir() else []


def _read_jsonl(files: list[str], columns: dict[str, str], select: str) -> pd.DataFrame:
    """The lines of `files` (in file and line order) with exactly `columns`, read by DuckDB as
    `workbench monitor` reads the prediction log: a field a line lacks is NULL; a torn last line,
    or one without a valid `at`, a `request_id` or a `version`, is skipped. `at` as UTC times,
    `row`/`version` as int64. No files: the same columns, no rows."""
    import duckdb

    spec = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items()) + "}"
    source = f"read_json(?, format='newline_delimited', ignore_errors=true, columns={spec})"
    con = duckdb.connect()
    try:
        if not files:  # read_json needs a file: no rows of the same types instead
            nulls = ", ".join(f'NULL::{kind} AS "{name}"' for name, kind in columns.items())
            source = f"(SELECT {nulls} LIMIT 0)"
        required = " AND ".join(f'"{c}" IS NOT NULL' for c in ("at", "request_id", "version") if c in columns)
        frame = con.execute(f"SELECT {select} FROM {source} WHERE {required}", [files] if files else []).df()
    finally:
        con.close()
    frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601", errors="coerce").astype("datetime64[us, UTC]")
    frame = frame[frame["at"].notna()].reset_index(drop=True)
    return frame.astype({c: "int64" for c in ("row", "version") if c in frame.columns})


def _decoded(texts: pd.Series) -> pd.Series:
    """JSON scalars (DuckDB's JSON columns) as Python values, in the narrowest dtype they fit; each
    distinct text decoded once (labels repeat: a 200,000-row log has a handful)."""
    codes, uniques = pd.factorize(texts)
    values = [json.loads(text) for text in uniques]
    return pd.Series([values[c] if c >= 0 else None for c in codes], index=texts.index, dtype=object).infer_objects()


def _objects(texts: pd.Series) -> pd.Series:
    """JSON objects as dicts (None where missing), one per row: callers may change theirs."""
    return pd.Series([json.loads(t) if isinstance(t, str) else None for t in texts], index=texts.index, dtype=object)


def _all_outcomes(ws: Workspace, model: str) -> tuple[pd.DataFrame, int]:
    """Every outcome line (oldest receipt first; ties in file order) and how many there are."""
    columns = {"at": "VARCHAR", "request_id": "VARCHAR", "row": "BIGINT", "outcome": "JSON"}
    frame = _read_jsonl(_jsonl_files(outcomes_dir(ws, model)), columns,
                        'request_id, coalesce("row", 0) AS "row", outcome, "at"')  # fmt: skip
    return frame.sort_values("at", kind="stable").reset_index(drop=True), len(frame)


def outcomes_frame(ws: Workspace, model: str) -> pd.DataFrame:
    """One row per (request_id, row) that has an outcome: the FIRST one received (later duplicates
    are not in it); columns request_id, row, outcome, at."""
    frame, _ = _all_outcomes(ws, model)
    first = frame.drop_duplicates(["request_id", "row"], keep="first").reset_index(drop=True)
    first["outcome"] = _decoded(first["outcome"])
    return first[OUTCOME_COLUMNS]


def _predictions(ws: Workspace, model: str) -> pd.DataFrame:
    columns = {"at": "VARCHAR", "request_id": "VARCHAR", "version": "BIGINT", "latency_ms": "DOUBLE", "row": "BIGINT",
               "shadow": "BOOLEAN", "prediction": "JSON", "proba": "JSON"}  # fmt: skip
    return _read_jsonl(_jsonl_files(predictions_dir(ws, model)), columns,
                       '"at", request_id, coalesce("row", 0) AS "row", version, coalesce(shadow, false) AS shadow, '
                       "latency_ms, prediction, proba")  # fmt: skip


def joined(ws: Workspace, model: str, since: str | datetime | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every logged prediction (at or after `since`, an ISO time or datetime) with its outcome, if any.

    Columns: at, request_id, row, version, shadow (a shadow version's prediction of the same row),
    latency_ms, prediction, proba (dict or None), outcome (NaN/None while pending), outcome_at.
    Counts: `outcomes` (distinct (request_id, row) with an outcome), `duplicates` (later outcome
    lines for one of those, not counted), `unknown` (outcomes no logged prediction has, at any time),
    and of the served (non-shadow) predictions in the window: `matched` and `pending`."""
    from workbench.audit import parse_since

    start = parse_since(since)
    every, lines = _all_outcomes(ws, model)
    first = every.drop_duplicates(["request_id", "row"], keep="first")
    predictions = _predictions(ws, model)
    predicted = predictions[["request_id", "row"]].drop_duplicates()
    unknown = len(first.merge(predicted, on=["request_id", "row"], how="left", indicator=True)
                  .query("_merge == 'left_only'"))  # fmt: skip
    if start is not None:
        predictions = predictions[predictions["at"] >= pd.Timestamp(start)]
    frame = predictions.merge(first.rename(columns={"at": "outcome_at"}), on=["request_id", "row"], how="left")
    frame["prediction"] = _decoded(frame["prediction"])
    frame["proba"] = _objects(frame["proba"])
    frame["outcome"] = _decoded(frame["outcome"])
    frame["outcome_at"] = pd.to_datetime(frame["outcome_at"], utc=True).astype("datetime64[us, UTC]")
    served = frame[~frame["shadow"].astype(bool)]
    matched = int(served["outcome_at"].notna().sum())
    counts = {"outcomes": len(first), "matched": matched, "duplicates": lines - len(first), "unknown": unknown,
              "pending": len(served) - matched}  # fmt: skip
    return frame[JOINED_COLUMNS].reset_index(drop=True), counts


@remote_capable("outcome_counts")
def outcome_counts(model: str, ws: Workspace | None = None) -> dict[str, int]:
    """The join's counts over everything logged for registered model `model` (`joined`): outcomes,
    matched, duplicates, unknown, pending (`workbench monitor outcomes NAME`)."""
    from workbench.models.registry import versions
    from workbench.workspace import current_workspace

    ws = ws or current_workspace()
    versions(model, ws)  # a registered model, or NotFoundError
    return {name: int(value) for name, value in joined(ws, model)[1].items()}


# ------------------------------------------------------------------------------------------- bulk


def bulk_data(data: Any, ws: Workspace, id_column: str) -> tuple[pd.DataFrame, str]:
    """The table of outcomes `data` stands for and how to describe it: a DataFrame, a CSV/Parquet
    file (the id column read as text, so ids of digits stay ids), or a snapshot `name[@version]`."""
    from workbench.snapshots import store
    from workbench.snapshots.sources import CSV_SUFFIXES, PARQUET_SUFFIXES, source_from

    if isinstance(data, pd.DataFrame):
        return data, "a DataFrame"
    suffixes = (*CSV_SUFFIXES, *PARQUET_SUFFIXES)
    if isinstance(data, str) and "/" not in data and not data.lower().endswith(suffixes) and not Path(data).exists():
        snap = store.get(data, ws)
        return store.load(snap.ref, ws), f"snapshot {snap.ref}"
    if not isinstance(data, (str, os.PathLike)):
        raise DataSourceError(f"Cannot read outcomes from a {type(data).__name__}.",
                              "Pass a DataFrame, a CSV/Parquet path or a snapshot NAME@VERSION.")  # fmt: skip
    source = source_from(data)
    try:
        if source.kind == "parquet":
            frame = pd.read_parquet(source.value)
        else:
            tabs = ".tsv" in Path(source.value).suffixes
            frame = pd.read_csv(source.value, dtype={id_column: str}, sep="\t" if tabs else ",")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"Could not read {source.value}: {str(exc).splitlines()[0]}",
                              "Check that it is a valid CSV or Parquet file.") from exc  # fmt: skip
    return frame, f"{source.kind} {source.value}"


def frame_items(frame: pd.DataFrame, id_column: str, outcome_column: str, row_column: str | None) -> list[dict]:
    """The rows of `frame` as outcome items (Python values; integer ids as text)."""
    wanted = [c for c in (id_column, outcome_column, row_column) if c]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ValidationError(f"The outcome data has no column {missing[0]!r}; its columns: "
                              f"{', '.join(map(str, frame.columns[:20]))}.",
                              "Name the columns with id_column=/outcome_column=/row_column= "
                              "(--id-column/--outcome-column/--row-column).")  # fmt: skip
    if frame.empty:
        raise ValidationError("The outcome data has no rows.", "Give a table with at least one outcome.")
    ids = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in frame[id_column].tolist()]
    outcomes = [None if v is pd.NA else v for v in frame[outcome_column].tolist()]
    if row_column is None:
        return [{"request_id": i, "outcome": o} for i, o in zip(ids, outcomes, strict=True)]
    rows = [int(v) if isinstance(v, float) and v.is_integer() else v for v in frame[row_column].tolist()]
    return [{"request_id": i, "row": r, "outcome": o} for i, r, o in zip(ids, rows, outcomes, strict=True)]


def record_bulk(ws: Workspace, model: str, data: Any, id_column: str = "request_id", outcome_column: str = "outcome",
                row_column: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Record a table of (late) outcomes of registered model `model`: every row is checked before
    any is written, then appended in chunks of MAX_ITEMS; audited with the counts."""
    from workbench.models.registry import versions

    versions(model, ws)  # a registered model, or NotFoundError (not a folder made for a typo)
    checked, described = bulk_items(data, ws, id_column, outcome_column, row_column)
    return record_checked(ws, model, checked, described)


def bulk_items(data: Any, ws: Workspace | None, id_column: str = "request_id", outcome_column: str = "outcome",
               row_column: str | None = None) -> tuple[list[tuple[Key, Any]], str]:  # fmt: skip
    """Every row of the table `data` stands for as a checked outcome (all checked before any is
    written), and how to describe the table. `ws` None: a snapshot is read from the team server
    (a client checks here, before sending anything: `remote.store_monitor`)."""
    frame, described = bulk_data(data, ws, id_column)
    items = frame_items(frame, id_column, outcome_column, row_column)
    labels = {"request_id": f"column {id_column!r}", "outcome": f"column {outcome_column!r}",
              "row": f"column {row_column!r}"}  # fmt: skip
    checked = [pair for start in range(0, len(items), MAX_ITEMS)
               for pair in check_items(items[start : start + MAX_ITEMS], start + 1, "of data row", labels)]  # fmt: skip
    return checked, described


def record_checked(ws: Workspace, model: str, checked: list[tuple[Key, Any]], described: str) -> dict[str, Any]:
    """Append checked bulk outcomes in chunks of MAX_ITEMS and audit the counts (`record_bulk`, and
    the team server's `POST /models/{name}/outcomes`, one request of a client's table)."""
    counts = {"recorded": 0, "duplicates": 0, "unknown": 0}
    for start in range(0, len(checked), MAX_ITEMS):
        for name, value in _append(ws, model, checked[start : start + MAX_ITEMS], "bulk").items():
            counts[name] += value
    _audit(ws, model, {"source": described, **counts})
    return {"model": model, "source": described, **counts}


def _audit(ws: Workspace, model: str, details: dict[str, Any]) -> None:
    from workbench import audit
    from workbench.catalog.connection import retry_conflicts, transaction

    def record() -> None:
        with transaction(ws) as con:
            audit.record(con, "outcomes.recorded", f"model:{model}", details)

    retry_conflicts(record)
