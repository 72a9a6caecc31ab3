"""Helpers shared by the tests (import as ``from helpers import ...``)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from submit_jvm import QUICK_JIT, executor_options

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def entry_script(name: str):
    """An entry script of spark_apps/ loaded as a module (they are run by path, not imported)."""
    path = Path(__file__).resolve().parents[1] / "spark_apps" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"entry_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dag_param_defaults(dag_id: str) -> dict:
    """The Param defaults of a DAG file (``PARAMS``), as a run without conf gets them."""
    spec = importlib.util.spec_from_file_location(f"dag_{dag_id}", REPO_ROOT / "dags" / f"{dag_id}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: param.value for name, param in module.PARAMS.items()}


def run_entry_in_process(spark, script: str, argv: list[str]) -> None:
    """``spark_apps/<script>``'s ``main(argv)`` on the shared SparkSession: the entry script's own
    argument parsing and library calls, without its ``spark.stop()`` (which would end the shared
    session) and without a spark-submit JVM start."""
    import pytest
    from pyspark.sql import SparkSession

    module = entry_script(script.removesuffix(".py"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SparkSession, "stop", lambda self: None)
        try:
            module.main(list(argv))
        finally:
            spark.sparkContext.setLogLevel("ERROR")


def write_jsonl(path: Path, records: list) -> Path:
    """Write records (dicts, or raw strings written as they are) as JSON Lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(record if isinstance(record, str) else json.dumps(record, ensure_ascii=False))
            out.write("\n")
    return path


def airflow_env_base(spark_master: str = "local[2]") -> dict[str, str]:
    """Environment of an Airflow command: this virtualenv first, Spark at ``spark_master``
    (``local[2]``, or e.g. ``spark://127.0.0.1:7077`` for a standalone cluster)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["AIRFLOW_CONN_SPARK_DEFAULT"] = json.dumps({"conn_type": "spark", "host": spark_master})
    spark_conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"}
    if os.environ.get("SPARK_SUBMIT_OPTS", "").startswith(QUICK_JIT):
        # Executors of a standalone cluster are JVMs of their own, started with spark-submit's
        # class path: its options serve them too (tests/submit_jvm.py).
        spark_conf["spark.executor.extraJavaOptions"] = executor_options()
    env["NBKNN_SPARK_CONF"] = json.dumps(spark_conf)
    env["NBKNN_BUILD_DIR"] = str(Path(os.environ["AIRFLOW_HOME"]) / "build")
    return env


def run_dag_test(
    dag_id: str,
    conf: dict,
    data_root: str,
    timeout: int = 900,
    logical_date: str | None = None,
    spark_master: str = "local[2]",
) -> subprocess.CompletedProcess:
    """``airflow dags test DAG [LOGICAL_DATE] -c CONF`` with the real operators, on a data root of
    the test's own. With a logical date the run gets the data interval the DAG's timetable infers
    for it (for a daily CronDataIntervalTimetable: the day before the logical date). The Spark
    tasks run on ``spark_master`` (the spark_default connection)."""
    env = airflow_env_base(spark_master)
    env["NBKNN_DATA_ROOT"] = data_root
    date_args = [logical_date] if logical_date else []
    return subprocess.run(
        [str(VENV_BIN / "airflow"), "dags", "test", dag_id, *date_args, "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_dag_tests(runs: dict[str, dict], data_root: str, log_dir: Path, timeout: int = 1200,
                  spark_master: str = "local[2]") -> subprocess.CompletedProcess:
    """``airflow dags test`` of each DAG in ``runs`` (DAG id -> conf), in order, in one process
    (nbknn_local.dag_runs, which the demo uses: Airflow's start-up paid once); each run's log in
    ``log_dir/<dag_id>.log``. The first failed run ends the sequence (exit code 1)."""
    env = airflow_env_base(spark_master)
    env["NBKNN_DATA_ROOT"] = data_root
    from nbknn_local import dag_runs

    return subprocess.run(dag_runs.command(runs, log_dir), env=env, capture_output=True, text=True, timeout=timeout)


def train_model_in_process(
    spark,
    docs: list[dict],
    workdir: Path,
    num_shards: int = 3,
    min_term_count: int = 1,
    model_type: str = "multinomial",
    alpha: float = 1.0,
    fit_prior: bool = True,
    version: str = "v1",
    tokenizer=None,
) -> str:
    """Train and publish a model with the library functions the Spark applications call,
    on the shared SparkSession (no spark-submit); returns the published model directory URI.
    ``tokenizer``: a TokenizerConfig (default: the default one)."""
    from nbknn.inputs.documents import InputSpec
    from nbknn.inputs.tokenizer import TokenizerConfig
    from nbknn.naive_bayes.class_prior import run_class_prior
    from nbknn.naive_bayes.publish import publish_model
    from nbknn.naive_bayes.term_counts import run_term_counts

    input_path = write_jsonl(workdir / "input" / "docs.jsonl", docs)
    root = workdir.as_uri()
    staging, version_dir = f"{root}/models/_staging/{version}", f"{root}/models/{version}"
    spec = InputSpec(uri=input_path.as_uri())
    run_class_prior(spark, spec, staging, f"{root}/rejects", max_reject_fraction=0.0)
    run_term_counts(
        spark, spec, staging, tokenizer or TokenizerConfig(), min_term_count=min_term_count, num_shards=num_shards
    )
    publish_model(
        spark, staging, version_dir, f"{root}/models/LATEST", version, model_type, alpha, fit_prior, lineage={}
    )
    return version_dir


def latest_run_task_states(dag_id: str) -> dict[tuple[str, int], str]:
    """{(task_id, map_index): state} of the DAG's most recent run, from the metadata DB."""
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        instances = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
        )
        return {(ti.task_id, ti.map_index): str(ti.state) for ti in instances}


def stage_partition_in_process(spark, docs: list[dict], workdir: Path, partition: str, version: str,
                               base_dir: str | None, num_shards: int):
    """The counting steps of an incremental nb_train run, in process, with the library functions its
    Spark tasks call: count ``docs`` written as ``input/labelled/<partition>/`` and add them to the
    model at ``base_dir`` (None: the partition alone). Returns (input spec, root URI, staging URI,
    the URI ``version`` is published at)."""
    from nbknn.inputs.documents import InputSpec
    from nbknn.inputs.tokenizer import TokenizerConfig
    from nbknn.naive_bayes.class_prior import run_class_prior
    from nbknn.naive_bayes.merge import run_merge_model
    from nbknn.naive_bayes.term_counts import run_term_counts

    partition_dir = workdir / "input" / "labelled" / partition
    write_jsonl(partition_dir / "part-0.jsonl", docs)
    root = workdir.as_uri()
    staging, version_dir = f"{root}/models/_staging/{version}", f"{root}/models/{version}"
    count_dir = f"{staging}/_work/delta" if base_dir else staging
    # Not Path.as_uri(): it percent-encodes the "=" of the partition name, which Spark keeps as is.
    spec = InputSpec(uri=f"file://{partition_dir}")
    run_class_prior(spark, spec, count_dir, f"{root}/rejects/{version}", max_reject_fraction=0.0)
    run_term_counts(spark, spec, count_dir, TokenizerConfig(), num_shards=1 if base_dir else num_shards)
    if base_dir:
        run_merge_model(spark, base_dir, count_dir, staging, num_shards=num_shards)
    return spec, root, staging, version_dir


def fold_partition_in_process(
    spark,
    docs: list[dict],
    workdir: Path,
    partition: str,
    version: str,
    base_dir: str | None,
    num_shards: int = 3,
    run_id: str | None = None,
) -> str:
    """One incremental nb_train run, in process (:func:`stage_partition_in_process`, then publish
    ``version``); returns its URI."""
    from nbknn.naive_bayes.publish import publish_model

    _, root, staging, version_dir = stage_partition_in_process(spark, docs, workdir, partition, version, base_dir,
                                                               num_shards)
    lineage = {"run_id": run_id or f"scheduled__{partition}", "mode": "incremental"}
    publish_model(spark, staging, version_dir, f"{root}/models/LATEST", version, "multinomial", 1.0, True, lineage)
    return version_dir


def local_path(uri: str) -> Path:
    """The local path of a ``file://`` URI."""
    return Path(urlparse(uri).path)


def predict_in_process(spark, model_dir: str, docs: list, workdir: Path, top_n: int = 0, max_reject_fraction=0.0,
                       path: str = "per_shard", history=None):
    """A prediction run with the library functions the entry scripts call, on the shared SparkSession:
    ``per_shard`` (vectorise -> every shard's pass -> combine) or ``single_pass``; ``history``: a
    quality_history.HistoryTarget. Returns (predictions by doc id, the run's summary, run root URI)."""
    from nbknn.contract import scores_shard_uri
    from nbknn.inputs.documents import InputSpec
    from nbknn.naive_bayes.combine import run_combine
    from nbknn.naive_bayes.shard_pass import run_predict_shard
    from nbknn.naive_bayes.single_pass import run_predict_single_pass
    from nbknn.naive_bayes.vectorize import run_vectorize

    spec = InputSpec(uri=write_jsonl(workdir / "input" / "docs.jsonl", docs).as_uri())
    run = (workdir / "run").as_uri()
    if path == "single_pass":
        summary = run_predict_single_pass(spark, spec, model_dir, f"{run}/predictions", f"{run}/report",
                                          f"{run}/rejects", max_reject_fraction, top_n, history=history)
    else:
        manifest = json.loads((local_path(model_dir) / "manifest.json").read_text())
        run_vectorize(spark, spec, model_dir, f"{run}/vectors", f"{run}/rejects", max_reject_fraction)
        for shard in range(manifest["num_shards"]):
            run_predict_shard(spark, model_dir, f"{run}/vectors", shard, scores_shard_uri(f"{run}/scores", shard),
                              top_n)
        summary = run_combine(spark, model_dir, f"{run}/vectors", f"{run}/scores", f"{run}/predictions",
                              f"{run}/report", top_n, history)
    rows = spark.read.parquet(f"{run}/predictions").collect()
    return {row["doc_id"]: row.asDict(recursive=True) for row in rows}, summary, run


def project_vectorizer(**options):
    """scikit-learn's CountVectorizer splitting text with the project's tokeniser (which lowercases
    itself): the oracles' counts of the same documents."""
    from sklearn.feature_extraction.text import CountVectorizer

    from nbknn.inputs.tokenizer import tokenize

    return CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, **options)


def sklearn_counts(docs: list, alpha: float = 1.0):
    """(vectorizer, X, nb): CountVectorizer with the project's tokeniser, the document-term matrix,
    and MultinomialNB (``alpha``) fitted on it, whose class and feature counts a model's tables must
    equal."""
    from sklearn.naive_bayes import MultinomialNB

    vectorizer = project_vectorizer()
    X = vectorizer.fit_transform([d["text"] for d in docs])
    return vectorizer, X, MultinomialNB(alpha=alpha).fit(X, [d["label"] for d in docs])


def sklearn_nb_predictions(train: list, test: list, alpha: float) -> dict:
    """{doc id: (label, probability)} of scikit-learn's MultinomialNB with the project's tokeniser:
    the independent oracle of the end-to-end predictions."""
    vectorizer, _, model = sklearn_counts(train, alpha)
    proba = model.predict_proba(vectorizer.transform([d["text"] for d in test]))
    best = proba.argmax(axis=1)
    return {d["id"]: (model.classes_[best[i]], proba[i, best[i]]) for i, d in enumerate(test)}


def _positions(ids, order, wanted):
    """Position in ``ids[order]`` of each of the ids ``wanted`` (non-negative ints; -1: no such id)."""
    import numpy as np

    table = np.full(max(ids.max(initial=-1), wanted.max(initial=-1)) + 1, -1)
    table[ids[order]] = np.arange(len(ids))
    return table[wanted]


def model_differences_from_sklearn(model_dir: Path, docs: list) -> list[str]:
    """How a published model's tables (classes, vocabulary, term counts; read with pyarrow, no
    Spark) differ from scikit-learn's counts on the same documents: CountVectorizer with the
    project's tokeniser and MultinomialNB's class and feature counts. Empty when they agree.

    Classes and terms are matched by label and term, not by id: a merged model keeps its parents'
    ids and appends new ones, so its ids need not follow scikit-learn's sorted order."""
    import numpy as np
    import pyarrow.parquet as pq

    from nbknn import contract

    vectorizer, X, nb = sklearn_counts(docs)
    classes = pq.read_table(model_dir / contract.CLASSES_TABLE).to_pydict()
    vocabulary = pq.read_table(model_dir / contract.VOCABULARY_TABLE).to_pydict()
    entries = pq.read_table(model_dir / contract.TERM_COUNTS_TABLE, columns=["class_id", "term_id", "count"]).to_pydict()
    # Each entry's row and column in scikit-learn's order: classes by label, terms by term.
    class_ids, term_ids = np.asarray(classes["class_id"]), np.asarray(vocabulary["term_id"])
    by_label, by_term = np.argsort(classes["label"], kind="stable"), np.argsort(vocabulary["term"], kind="stable")
    entry_class, entry_term = np.asarray(entries["class_id"]), np.asarray(entries["term_id"])
    rows, columns = _positions(class_ids, by_label, entry_class), _positions(term_ids, by_term, entry_term)
    known = (rows >= 0) & (columns >= 0)
    # Both sides in one shape, so that a missing or extra class or term shows as a difference.
    shape = (max(len(class_ids), len(nb.classes_)), max(len(term_ids), X.shape[1]))
    counts, expected = np.zeros(shape), np.zeros(shape)
    np.add.at(counts, (rows[known], columns[known]), np.asarray(entries["count"])[known])
    expected[: nb.feature_count_.shape[0], : nb.feature_count_.shape[1]] = nb.feature_count_
    found = {
        "unique class ids": (len(set(class_ids.tolist())), len(class_ids)),
        "unique term ids": (len(set(term_ids.tolist())), len(term_ids)),
        "class labels": ([classes["label"][i] for i in by_label], nb.classes_.tolist()),
        "class document counts": ([classes["doc_count"][i] for i in by_label], nb.class_count_.astype(int).tolist()),
        "vocabulary": ([vocabulary["term"][i] for i in by_term], vectorizer.get_feature_names_out().tolist()),
        "entries of unknown classes or terms": (list(zip(entry_class[~known].tolist(), entry_term[~known].tolist())), []),
        "stored entries": (len(entries["count"]), int((nb.feature_count_ > 0).sum())),
        "class-term counts": (counts.tolist(), expected.tolist()),
    }
    return [f"{name}: model {ours!r:.200} != scikit-learn {theirs!r:.200}"
            for name, (ours, theirs) in found.items() if ours != theirs]
