"""One nb_train DAG run shared by the training and the prediction end-to-end tests.

Both need a model trained through Airflow on a slice of Reuters R8; a run costs a minute or more of
spark-submits, so it is made once per test session, whichever pytest-xdist worker asks first (the
others wait on a lock and read its record). What the tests check about the run (task states, asset
events) is read right after it, before any other run can change "the latest run".
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import asset_event_extras, latest_run_task_states, run_dag_test, write_jsonl

R8_TRAIN_DOCS = 400
R8_NUM_SHARDS = 2
# Two bad records: the run quarantines them and still publishes.
R8_BAD_RECORDS = ["{not json", '{"id": "no-text", "label": "earn"}']
R8_TRAIN_CONF = {"input_uri": "input/r8", "num_shards": R8_NUM_SHARDS, "alpha": 0.5, "max_reject_fraction": 0.05}


@dataclass(frozen=True)
class TrainingRun:
    root: Path  # the run's data root (file://)
    docs: list  # the accepted training documents
    bad_records: list  # the quarantined ones
    num_shards: int
    version: str
    model_dir: Path
    manifest: dict
    task_states: dict  # {(task_id, map_index): state} of the run
    asset_extras: list  # extras of every model asset event so far, oldest first


@pytest.fixture(scope="session")
def r8_training_run(airflow_db, corpus, tmp_path_factory, worker_id) -> TrainingRun:
    # The session's temporary root, which every xdist worker's own base folder sits in.
    session_dir = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        session_dir = session_dir.parent
    record = session_dir / "r8-training-run.json"
    with open(session_dir / "r8-training-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            run = _train_r8(corpus, session_dir / "r8-training-run")
            record.write_text(json.dumps({**dataclasses.asdict(run), "root": str(run.root),
                                          "model_dir": str(run.model_dir),
                                          "task_states": [[*key, state] for key, state in run.task_states.items()]}))
    saved = json.loads(record.read_text())
    return TrainingRun(**{**saved, "root": Path(saved["root"]), "model_dir": Path(saved["model_dir"]),
                          "task_states": {(task, index): state for task, index, state in saved["task_states"]}})


def _train_r8(corpus, root: Path) -> TrainingRun:
    root.mkdir()
    docs = corpus("reuters-r8", "train", R8_TRAIN_DOCS)
    write_jsonl(root / "input" / "r8" / "part-0.jsonl", [*docs, *R8_BAD_RECORDS])
    result = run_dag_test("nb_train", R8_TRAIN_CONF, root.as_uri())
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    models = root / "models" / "naive_bayes"
    version = (models / "LATEST").read_text().strip()
    return TrainingRun(
        root=root,
        docs=docs,
        bad_records=R8_BAD_RECORDS,
        num_shards=R8_NUM_SHARDS,
        version=version,
        model_dir=models / version,
        manifest=json.loads((models / version / "manifest.json").read_text()),
        task_states=latest_run_task_states("nb_train"),
        asset_extras=asset_event_extras("nbknn_naive_bayes_model"),
    )
