"""Expectations checked before a snapshot is registered.

Expectations are a small dict (or a YAML/JSON file holding one):

    min_rows: 100
    not_null: [alcohol, class]
    unique: [id]                 # a column, or a list of columns for a composite key
    ranges: {alcohol: {min: 0, max: 20}}
    allowed_values: {class: [0, 1, 2]}

Each is translated to one DuckDB query over the candidate Parquet file; the report names the
expectation, the column, how many rows failed and a few example rows, so the user can find the
bad data. A failed expectation registers nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from workbench.errors import ValidationError
from workbench.snapshots.engine import quote_ident
from workbench.snapshots.profile import parquet_from

KNOWN_KEYS = ("min_rows", "not_null", "unique", "ranges", "allowed_values")
EXAMPLES = 5


@dataclass
class Failure:
    expectation: str
    column: str | None
    failed_rows: int
    detail: str
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ValidationReport:
    checked: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.ok:
            return f"All {self.checked} expectations passed."
        lines = [f"{len(self.failures)} of {self.checked} expectations failed:"]
        for f in self.failures:
            where = f" on {f.column!r}" if f.column else ""
            lines.append(f"  - {f.expectation}{where}: {f.detail}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "failures": [asdict(f) for f in self.failures]}


def load_expectations(spec: dict[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    """Accept a dict or a path to a YAML/JSON file; check its keys and shapes."""
    if spec is None:
        return {}
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValidationError(f"Cannot read expectations file {path}: {exc.strerror}.", "Check the path.") from exc
        import yaml

        try:
            spec = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ValidationError(
                f"Expectations file {path} is not valid JSON/YAML: {exc}.",
                "Fix the syntax; see the expectations format in the docs.",
            ) from exc
    if not isinstance(spec, dict):
        raise ValidationError("Expectations must be a mapping.", f"Use keys among: {', '.join(KNOWN_KEYS)}.")
    unknown = sorted(set(spec) - set(KNOWN_KEYS))
    if unknown:
        raise ValidationError(
            f"Unknown expectation(s): {', '.join(map(str, unknown))}.",
            f"Known expectations: {', '.join(KNOWN_KEYS)}.",
        )
    _check_shape(spec)
    return spec


def _check_shape(spec: dict[str, Any]) -> None:
    if "min_rows" in spec and (not isinstance(spec["min_rows"], int) or spec["min_rows"] < 0):
        raise ValidationError("min_rows must be a non-negative integer.")
    for key in ("not_null", "unique"):
        if key in spec and not isinstance(spec[key], list):
            raise ValidationError(f"{key} must be a list of column names.")
    for key in ("ranges", "allowed_values"):
        if key in spec and not isinstance(spec[key], dict):
            raise ValidationError(f"{key} must map column names to rules.")
    for column, bounds in spec.get("ranges", {}).items():
        if not isinstance(bounds, dict) or not set(bounds) <= {"min", "max"} or not bounds:
            raise ValidationError(
                f"ranges.{column} must be a mapping with 'min' and/or 'max'.",
                "E.g. ranges: {alcohol: {min: 0, max: 20}}",
            )
    for column, allowed in spec.get("allowed_values", {}).items():
        if not isinstance(allowed, list) or not allowed:
            raise ValidationError(f"allowed_values.{column} must be a non-empty list.")


def _examples(con: duckdb.DuckDBPyConnection, source: str, where: str, params: list) -> list:
    cursor = con.execute(f"SELECT * FROM {source} WHERE {where} LIMIT {EXAMPLES}", params)
    names = [d[0] for d in cursor.description]
    return [
        {
            k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
            for k, v in zip(names, row, strict=True)
        }
        for row in cursor.fetchall()
    ]


def validate(con: duckdb.DuckDBPyConnection, path: Path, spec: dict[str, Any]) -> ValidationReport:
    """Run every expectation in `spec` against the Parquet file at `path`."""
    report = ValidationReport()
    if not spec:
        return report
    source = parquet_from(path)
    names = {d[0] for d in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}

    def column(name: Any, key: str) -> str:
        if name not in names:
            raise ValidationError(
                f"Expectation {key} names column {name!r}, which the data does not have.",
                f"Columns are: {', '.join(sorted(names))}.",
            )
        return quote_ident(name)

    def check(expectation: str, col: str | None, where: str, params: list, detail: str) -> None:
        report.checked += 1
        failed = con.execute(f"SELECT count(*) FROM {source} WHERE {where}", params).fetchone()[0]
        if failed:
            examples = _examples(con, source, where, params)
            report.failures.append(Failure(expectation, col, int(failed), detail % failed, examples))

    if "min_rows" in spec:
        report.checked += 1
        rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
        if rows < spec["min_rows"]:
            report.failures.append(Failure("min_rows", None, 0, f"{rows} rows, at least {spec['min_rows']} expected"))
    for name in spec.get("not_null", []):
        q = column(name, "not_null")
        check("not_null", name, f"{q} IS NULL", [], "%d null values")
    for bounds_col, bounds in spec.get("ranges", {}).items():
        q = column(bounds_col, "ranges")
        clauses, params = [], []
        if "min" in bounds:
            clauses.append(f"{q} < ?")
            params.append(bounds["min"])
        if "max" in bounds:
            clauses.append(f"{q} > ?")
            params.append(bounds["max"])
        span = f"[{bounds.get('min', '-inf')}, {bounds.get('max', 'inf')}]"
        check("ranges", bounds_col, " OR ".join(clauses), params, f"%d values outside {span}")
    for allowed_col, allowed in spec.get("allowed_values", {}).items():
        q = column(allowed_col, "allowed_values")
        marks = ", ".join("?" for _ in allowed)
        check(
            "allowed_values",
            allowed_col,
            f"{q} IS NOT NULL AND {q} NOT IN ({marks})",
            list(allowed),
            "%d values not in the allowed list",
        )
    for key in spec.get("unique", []):
        key_cols = key if isinstance(key, list) else [key]
        quoted = ", ".join(column(k, "unique") for k in key_cols)
        label = "+".join(map(str, key_cols))
        report.checked += 1
        dupes = con.execute(
            f"SELECT count(*), coalesce(sum(n), 0) FROM "
            f"(SELECT count(*) AS n FROM {source} GROUP BY {quoted} HAVING count(*) > 1)"
        ).fetchone()
        if dupes[0]:
            report.failures.append(Failure("unique", label, int(dupes[1]), f"{dupes[0]} duplicated key values"))
    return report
