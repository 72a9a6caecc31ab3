"""The quality history of nb_predict: one row per evaluated run beside the predictions, and its picture.

Every run whose input has labels adds one row (run key, run date, model version, accuracy,
macro-F1, each class's F1) to ``predictions/naive_bayes/_quality_history/`` as a small JSON file of
its own, ``<run-key>.json``, written under a hidden temporary name and renamed over its place
(:func:`nbknn.common.fs.write_json_atomic`). The history is the set of these rows. So:

- a retry of a run writes the same name and replaces its own row: a run has at most one row;
- two runs at once write two different files: there is no shared file to read, change and write
  back, so no run can lose another's row;
- a run killed while writing its row leaves at most a hidden temporary file, which
  :func:`read_history` skips and the next write of that row removes.

The row is written before the report is published; the report's picture is drawn afterwards,
without Spark (the DAG's ``report`` task), from the history as it then stands: the run itself and
every row written by then, a later run's too when that run wrote it first. This module imports
no Spark: the Airflow side reads rows too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbknn.common import fs
from nbknn.contract import join_uri

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ROW_SUFFIX = ".json"
# Dates written under the picture's x axis at most (the others are left unlabelled).
MAX_DATE_TICKS = 12
# Model changes marked on the picture at most (beyond, none is: they would cover the lines).
MAX_MODEL_MARKS = 6


@dataclass(frozen=True)
class HistoryTarget:
    """Where a run's row goes and what names it: the history folder, the run key, the run's date
    (ISO 8601; the logical date of a scheduled run, else when it was triggered; may be unknown)."""

    uri: str
    run_key: str
    run_date: str | None = None


@dataclass(frozen=True)
class QualityRow:
    """One evaluated run of the history (a file ``<run_key>.json``)."""

    run_key: str
    run_date: str | None
    model_version: str
    documents: int
    accuracy: float
    macro_f1: float
    # F1 of every class with true documents in the run (a class only ever predicted has none).
    per_class_f1: dict

    @classmethod
    def from_metrics(cls, target: HistoryTarget, metrics: dict) -> QualityRow:
        return cls(
            run_key=target.run_key,
            run_date=target.run_date,
            model_version=str(metrics["model_version"]),
            documents=int(metrics["documents"]),
            accuracy=float(metrics["accuracy"]),
            macro_f1=float(metrics["macro_f1"]),
            per_class_f1={label: float(m["f1"]) for label, m in sorted(metrics["per_class"].items())
                          if m["support"] > 0},
        )

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def sort_key(self) -> tuple:
        # Runs without a date first, then by date; the run key breaks ties (and orders dateless rows).
        return (self.run_date is not None, self.run_date or "", self.run_key)


def row_uri(history_uri: str, run_key: str) -> str:
    return join_uri(history_uri, run_key + ROW_SUFFIX)


def write_row(spark: SparkSession, target: HistoryTarget, row: QualityRow) -> None:
    """Add the run's row to the history, or replace the row an earlier attempt of the run wrote."""
    fs.mkdirs(spark, target.uri)
    fs.write_json_atomic(spark, row_uri(target.uri, row.run_key), row.to_dict())


def is_row_name(name: str) -> bool:
    """Whether a file name of the history folder is a row (hidden temporary files are not)."""
    return name.endswith(ROW_SUFFIX) and not name.startswith((".", "_"))


def rows_in(names: list[str], read_row) -> list[QualityRow]:
    """The rows among a history folder's file ``names`` (hidden temporary files skipped), each
    parsed from ``read_row(name)``, in run order (date, then run key)."""
    rows = (QualityRow(**read_row(name)) for name in names if is_row_name(name))
    return sorted(rows, key=QualityRow.sort_key)


def read_history(spark: SparkSession, history_uri: str) -> list[QualityRow]:
    """Every row of the history in run order; hidden temporary files skipped."""
    if not fs.exists(spark, history_uri):
        return []
    return rows_in(fs.list_names(spark, history_uri), lambda name: fs.read_json(spark, join_uri(history_uri, name)))


def history_series(rows: list[QualityRow]) -> dict:
    """What the picture plots, in run order: x labels (the run's date, else its key), accuracy,
    macro-F1, and the run indexes at which the model version changes (with the new version)."""
    changes = [(i, row.model_version) for i, row in enumerate(rows)
               if i == 0 or row.model_version != rows[i - 1].model_version]
    return {
        "labels": [(row.run_date or row.run_key)[:16].replace("T", " ") for row in rows],
        "accuracy": [row.accuracy for row in rows],
        "macro_f1": [row.macro_f1 for row in rows],
        "model_changes": changes,
    }


def history_figure(rows: list[QualityRow], current_run_key: str | None = None):
    """A matplotlib ``Figure``: accuracy and macro-F1 over the runs, one point per run, a dotted
    line where the model version changes (labelled with the version's date part), the current run
    circled. The y axis spans the values (at least 0.1 wide) so that a drop of a few points shows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = history_series(rows)
    n = len(rows)
    figure = Figure(figsize=(9, 4.2))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.86, bottom=0.27)
    axes = figure.add_subplot()
    x = list(range(n))
    axes.plot(x, series["accuracy"], marker="o", markersize=4, color="#3b75af", label="accuracy")
    axes.plot(x, series["macro_f1"], marker="s", markersize=4, color="#e07b39", label="macro-F1")
    values = series["accuracy"] + series["macro_f1"]
    low, high = min(values, default=0.0), max(values, default=1.0)
    pad = max(0.1 - (high - low), 0.0) / 2 + 0.02
    axes.set_ylim(max(0.0, low - pad), min(1.0, high + pad) + 0.001)
    axes.set_xlim(-0.5, max(n - 0.5, 0.5))
    # Daily retraining changes the model at every run: then the lines and names would hide the data.
    changes = series["model_changes"] if len(series["model_changes"]) <= MAX_MODEL_MARKS else []
    for i, _ in changes[1:]:
        axes.axvline(i - 0.5, color="#888", linestyle=":", linewidth=1)
    for i, version in changes:
        axes.annotate(f"model {version[:16]}", (max(i - 0.5, -0.5), 1.0), xycoords=("data", "axes fraction"),
                      xytext=(2, 2), textcoords="offset points", fontsize=7, color="#555", rotation=0,
                      annotation_clip=False)
    if current_run_key is not None:
        for i, row in enumerate(rows):
            if row.run_key == current_run_key:
                axes.plot([i, i], [row.accuracy, row.macro_f1], linestyle="none", marker="o", markersize=11,
                          markerfacecolor="none", markeredgecolor="#222", label="this run")
    step = max(1, -(-n // MAX_DATE_TICKS))
    ticks = x[::step]
    axes.set_xticks(ticks, [series["labels"][i] for i in ticks], rotation=30, ha="right", fontsize=7,
                    parse_math=False)
    axes.set_xlabel("run (date)")
    axes.grid(axis="y", color="#ddd")
    axes.set_axisbelow(True)
    axes.set_ylabel("score")
    axes.legend(loc="best", fontsize=8)
    figure.suptitle(f"nb_predict quality over {n} evaluated run{'s' if n != 1 else ''}", y=0.98)
    return figure


def history_png(rows: list[QualityRow], current_run_key: str | None = None) -> bytes:
    buffer = io.BytesIO()
    history_figure(rows, current_run_key).savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def record(spark: SparkSession, target: HistoryTarget, metrics: dict) -> int:
    """Write the run's row; returns how many rows the history then holds."""
    write_row(spark, target, QualityRow.from_metrics(target, metrics))
    return sum(is_row_name(name) for name in fs.list_names(spark, target.uri))
