"""Write the README's example data: two deliveries of the UCI wine data as CSV files.

The files are committed so that the README's commands work on a fresh checkout without a
download; this script says exactly where they come from (scikit-learn's bundled copy of the
UCI wine data) and rebuilds them byte for byte:

    .venv/bin/python data/make_wine.py

They are the same two deliveries that `notebooks/01_register_data.ipynb` registers:
`wine.csv` holds the first 150 samples, `wine-2.csv` all 178 with two corrected magnesium
readings (samples 3 and 7), so `wine@1` and `wine@2` differ in rows added and rows changed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
FIRST, SECOND = HERE / "wine.csv", HERE / "wine-2.csv"


def deliveries() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first (150 rows) and the second (178 rows, two fixes) delivery, with a `sample_id` key."""
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame
    wine.insert(0, "sample_id", range(1, len(wine) + 1))
    second = wine.copy()
    second.loc[second.sample_id.isin([3, 7]), "magnesium"] += 1.0
    return wine.iloc[:150].reset_index(drop=True), second


def csv_text(frame: pd.DataFrame) -> str:
    """CSV with shortest round-trip floats (`127.0` stays a float column) and `\\n` line ends."""
    return frame.to_csv(index=False, lineterminator="\n")


def main() -> None:
    first, second = deliveries()
    for path, frame in ((FIRST, first), (SECOND, second)):
        path.write_text(csv_text(frame))
        print(f"wrote {path} ({len(frame)} rows)")


if __name__ == "__main__":
    main()
