"""Batch predictions in the model's prediction log (`workbench predict --log`, see `models.batch`).

One job is one request of the log: id `batch-<hex>`, `row` counting through the scored table,
`"batch": true` on each line (`serving.predlog.batch_lines`, the served lines' format). Its lines go
to a file of their own, `predictions/<model>/<date>-batch-<hex>.jsonl`, written first under a name
no reader globs (`.*.partial`) and renamed only when the job succeeded: a failed job logs nothing.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

import numpy as np

from workbench.models.registry import ModelVersion
from workbench.permissions import make_dir, open_for_append
from workbench.serving.inputs import Conformed
from workbench.serving.predict import Predictor
from workbench.serving.predlog import batch_lines, predictions_dir
from workbench.workspace import Workspace


class BatchLog:
    """This job's lines of the model's prediction log, written to a file no reader globs (`.partial`)
    and renamed into the log only when every chunk was scored."""

    def __init__(self, ws: Workspace, version: ModelVersion, predictor: Predictor) -> None:
        self.version, self.predictor = version, predictor
        self.request_id = f"batch-{uuid.uuid4().hex}"
        folder = make_dir(predictions_dir(ws, version.name))
        self.path = folder / f"{datetime.now(timezone.utc):%Y%m%d}-{self.request_id}.jsonl"
        self.partial = folder / f".{self.path.name}.partial"
        self.file = os.fdopen(open_for_append(self.partial), "a")  # the folder's mode: rows are inputs
        self.rows = 0

    def write(self, inputs: Conformed, predictions: np.ndarray, table: np.ndarray | None, first_row: int,
              elapsed_ms: float) -> None:  # fmt: skip
        predictor = self.predictor
        if table is not None and predictor.classes is not None:
            probas = [dict(zip(predictor.classes, row.tolist(), strict=True)) for row in table]
        else:
            probas = predictor.probabilities(inputs)
        lines = batch_lines(self.request_id, self.version.version, inputs, predictions.tolist(), elapsed_ms,
                            probas, first_row)  # fmt: skip
        self.file.write("\n".join(lines) + "\n")
        self.rows += len(lines)

    def commit(self) -> None:
        self.file.close()
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)
