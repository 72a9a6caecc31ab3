"""Concurrency: two runs of the same Spark application, with different run keys, at the same time,
into the same data root (two spark-submits started together, as two DAG runs' tasks would be).

``nb_publish_model`` for two training runs (two different models: 2 and 3 shards): both model
versions are published complete, each equal to its solo publication, and LATEST, which both runs
replace, ends naming one of them, complete; a watcher checks all along that no reader sees a
partial model or a LATEST naming one. The solo references are the same entry script run one
after the other, in process.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from helpers import write_jsonl
from nbknn import contract
from nbknn_airflow import param_schemas
from reliability_support import (
    Watcher,
    compare_all,
    copy_tree,
    model_problems,
    outputs_of,
    run_entry_in_process,
    run_spark_submit,
    spark_environment,
    spark_submit_command,
)

pytestmark = [pytest.mark.reliability, pytest.mark.spark]

DOCUMENTS = {"input_format": "jsonl", "id_column": "id", "label_column": "label", "text_column": "text",
             "max_reject_fraction": 0.05, "max_record_bytes": 8 * 1024 * 1024}
TRAIN = {**DOCUMENTS, "input_uri": "input/labelled", "mode": "full", "base_version": None,
         "partition_format": "date=%Y-%m-%d", "model_type": "multinomial", "alpha": 1.0, "fit_prior": True,
         "min_term_count": 1, "max_entries_per_shard": None, "token_pattern": r"[\p{L}\p{M}\p{N}]{2,}",
         "lowercase": True, "normalization": contract.DEFAULT_NORMALIZATION,
         **param_schemas.NB_TRAIN_DEFAULTS}  # model selection off, its grids at their defaults
TRAINING_RUNS = {  # run id -> (run_after, num_shards): two different models
    "manual__2026-11-22T02:00:00+00:00": (datetime(2026, 11, 22, 2, tzinfo=timezone.utc), 2),
    "manual__2026-11-22T02:00:05+00:00": (datetime(2026, 11, 22, 2, 0, 5, tzinfo=timezone.utc), 3),
}


def relative(root_uri: str, uri: str) -> str:
    return uri[len(root_uri) + 1:]


def run_together(commands: list[list[str]], env: dict, logs: Path, cwd: Path) -> list:
    """Start every command at the same moment (one thread each); returns their Runs."""
    runs: list = [None] * len(commands)
    barrier = threading.Barrier(len(commands))

    def one(i: int) -> None:
        barrier.wait()
        started = time.monotonic()
        runs[i] = run_spark_submit(commands[i], env, logs / f"run-{i}.log", cwd)
        runs[i].started, runs[i].ended = started, time.monotonic()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(commands))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs


def overlap_seconds(runs) -> float:
    return max(0.0, min(r.ended for r in runs) - max(r.started for r in runs))


@pytest.fixture(scope="module")
def setup(spark, corpus, tmp_path_factory):
    """Inputs, both runs' plans, and the solo references (snapshots of the data root)."""
    from nbknn_airflow.plans.nb_train import plan_training

    base = tmp_path_factory.mktemp("concurrency")
    root, scratch = base / "data", base / "scratch"
    uri = root.as_uri()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**spark_environment(scratch), "NBKNN_DATA_ROOT": uri}.items():
            patch.setenv(name, value)
        patch.delenv("NBKNN_INPUT_ROOTS", raising=False)
        write_jsonl(root / "input/labelled/part-0.jsonl", corpus("reuters-r8", "train", 200))

        trainings = [plan_training({**TRAIN, "num_shards": shards}, run_id, run_after)
                     for run_id, (run_after, shards) in TRAINING_RUNS.items()]
        for training in trainings:
            run_entry_in_process(spark, "nb_class_prior.py", training["class_prior_args"])
            run_entry_in_process(spark, "nb_term_counts.py", training["term_counts_args"])
        copy_tree(root, base / "before-publish")
        for training in trainings:
            run_entry_in_process(spark, "nb_publish_model.py", training["publish_args"])
        copy_tree(root, base / "solo-published")

        yield {"base": base, "root": root, "uri": uri, "scratch": scratch,
               "trainings": trainings}


def test_two_publications_at_once_both_complete_and_latest_names_a_complete_model(setup, figures):
    root, uri, base = setup["root"], setup["uri"], setup["base"]
    copy_tree(base / "before-publish", root)
    commands = [spark_submit_command("nb_publish_model.py", t["publish_args"], f"nbknn-publish-{i}")
                for i, t in enumerate(setup["trainings"])]
    watcher = Watcher(lambda: model_problems(root / "models" / "naive_bayes"))
    watcher.start()
    try:
        runs = run_together(commands, dict(os.environ), setup["scratch"] / "logs-publish", setup["scratch"])
    finally:
        watcher.stop()
    assert [r.returncode for r in runs] == [0, 0], [r.log for r in runs]

    versions = [t["version"] for t in setup["trainings"]]
    outputs = [relative(uri, t["uris"]["version_dir"]) for t in setup["trainings"]]
    comparison = compare_all(outputs_of(base / "solo-published", outputs), outputs_of(root, outputs))
    latest = (root / "models/naive_bayes/LATEST").read_text().strip()
    figures.update(
        concurrent_runs=2,
        overlap_s=round(overlap_seconds(runs), 1),
        durations_s=[round(r.seconds, 1) for r in runs],
        watcher_polls=watcher.polls,
        partial_outputs_seen=len(watcher.violations),
        latest=latest,
        records_compared=comparison.records,
        records_lost=comparison.lost,
        records_duplicated=comparison.extra,
    )
    figures.show("publish x2")
    assert not watcher.errors and not watcher.violations, watcher.violations + watcher.errors
    assert overlap_seconds(runs) > 0
    assert comparison.differences == [], comparison.differences
    assert latest in versions
    assert model_problems(root / "models" / "naive_bayes") == []
    assert not (root / "models/naive_bayes/_staging").exists() or not any((root / "models/naive_bayes/_staging").iterdir())
