"""Fault injection: every Spark application of the three pipelines is stopped at every commit step
and run again with the same arguments, as an Airflow retry would; and each one that runs Spark jobs
is killed for real (SIGKILL to its whole process group, as a lost worker or an OOM-killed container
would end it) while a job runs.

**Commit points** (in process, deterministic; nb_train's publish task, which runs in the Airflow
worker without Spark, is stopped the same way at the calls of ``nbknn_airflow.model_publish``). The application's entry script runs in process
with every call that changes the data root counted: the Hadoop FileSystem operations of
``nbknn.common.fs`` (each rename, each atomic replacement of a small file such as a summary, a
manifest or LATEST, each deletion) and Spark's ``DataFrameWriter`` (each staged or scratch table).
A first run lists these steps and copies the data root at the first point (before or after a step)
of each distinct state it passes through: what a run stopped there, by a SIGKILL or by an exception
raised at that call, would leave, since the calls are synchronous (nothing of the steps before is
still in flight, nothing after has started). The copy is taken from that one run rather than from a
run stopped at each point: the application is deterministic, so the two copies are the same, and
the test does not run it again up to each point. On a first publication, that run is the
reference run itself (below). From each copy:

* a reader sees no partial output (the checks of the watcher below);
* every published output is the old one intact or the new one complete: on a first publication
  absent or equal to the reference, on a republication equal to the reference, or, between the
  two renames that replace a directory, absent with the old one whole in its ``_replaced-``
  sibling (the one window fs.publish_dir documents);
* the next run completes with outputs equal, by content, to an undisturbed run's (the reference,
  computed in process before), and no temporary sibling is left anywhere.

Each application is tried on its first publication (the data root as before its reference run)
and on a republication over its own complete output (a retried or cleared task).

**SIGKILL during a Spark job** (spark-submit, exactly as the Airflow operator starts it). The
driver's REST status API is polled and the process group is killed as soon as it reports a
running job; the test asserts that it did (a run that ends first is a retry of a finished task,
checked like the others; at most three runs). A watcher polls every published location all
along and fails the test if a reader could see a partial output; after the kill the old output
is intact, and the next run restores the reference and leaves no temporary sibling.
``nb_publish_model`` runs no Spark job (its steps are renames and small files, all covered by the
commit points).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from helpers import write_jsonl
from nbknn import contract
from nbknn_airflow import param_schemas
from processes import free_port
from reliability_support import (
    FaultPoints,
    InjectedKill,
    Watcher,
    big_document_line,
    canonical_output,
    compare_all,
    copy_tree,
    json_file_problems,
    kill_during_spark_job,
    leftovers,
    model_problems,
    outputs_of,
    published_dir_problems,
    run_entry_in_process,
    run_spark_submit,
    spark_environment,
    spark_submit_command,
    tree_fingerprint,
)

pytestmark = [pytest.mark.reliability, pytest.mark.spark]

TRAIN_RUN_ID = "manual__2026-11-22T02:00:00+00:00"
PREDICT_RUN_ID = "manual__2026-11-22T06:00:00+00:00"
KNN_RUN_ID = "manual__2026-11-22T03:00:00+00:00"
RUN_AFTER = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
BIG_COMPANIONS = [{"id": "c1", "label": "earn", "text": "net profit rose"}, {"id": "c2", "label": "grain", "text": "wheat"}]
BAD_TRAIN_LINES = [
    "not json at all",
    '{"id": "bad-1", "label": "earn"}',
    '{"id": "bad-2", "label": "", "text": "an empty label"}',
]

DOCUMENT_PARAMS = {
    "input_format": "jsonl",
    "id_column": "id",
    "label_column": "label",
    "text_column": "text",
    "max_reject_fraction": 0.05,
    "max_record_bytes": 8 * 1024 * 1024,
}
TRAIN_PARAMS = {
    **DOCUMENT_PARAMS,
    "mode": "full",
    "base_version": None,
    "partition_format": "date=%Y-%m-%d",
    "input_uri": "input/nb_train/labelled",
    "model_type": "multinomial",
    "alpha": 1.0,
    "fit_prior": True,
    "min_term_count": 1,
    "num_shards": 2,
    "max_entries_per_shard": None,
    "token_pattern": r"[\p{L}\p{M}\p{N}]{2,}",
    "lowercase": True,
    "normalization": contract.DEFAULT_NORMALIZATION,
    **param_schemas.NB_TRAIN_DEFAULTS,  # model selection off, its grids at their defaults
}
PREDICT_PARAMS = {**DOCUMENT_PARAMS, "input_uri": "input/nb_predict/documents", "model_version": "latest", "top_n": 2}
KNN_PARAMS = {
    "input_uri": "input/knn_neighbors/vectors.jsonl",
    "input_format": "jsonl",
    "id_column": "id",
    "vector_column": "vector",
    "query_uri": None,
    "dim": None,
    "k": 5,
    "metric": "euclidean",
    "mode": "auto",
    "exclude_self": True,
    "block_bytes_budget": 64 * 1024 * 1024,
    "broadcast_max_bytes": 256 * 1024 * 1024,
    "annoy_trees": 10,
    "max_reject_fraction": 0.01,
}


@dataclass
class Step:
    """One Spark application of a pipeline, with the arguments its Airflow task would get."""

    app: str
    script: str
    args: list[str]
    outputs: list[str]  # relative to the data root: what the application writes
    scratch: str | None = None  # outputs under this prefix are no reader's (the staging model)
    reference_seconds: float = 0.0
    before: Path | None = None  # snapshot of the data root before the application ran
    after: Path | None = None  # ... and after its undisturbed run
    recorded: FaultPoints | None = None  # that run's commit steps and the states it passed through


@dataclass
class Pipeline:
    root: Path
    uri: str
    scratch: Path
    steps: dict[str, Step]
    published_dirs: list[tuple[Path, tuple[str, ...]]]
    json_files: list[Path]
    results: dict = field(default_factory=dict)
    kills: dict = field(default_factory=dict)
    publish_task_kwargs: dict = field(default_factory=dict)  # nb_train's publish task (no Spark)

    def visible_problems(self) -> list[str]:
        """What a reader of the data root could see that is not a complete output."""
        problems = model_problems(self.root / "models" / "naive_bayes")
        for path, markers in self.published_dirs:
            problems += published_dir_problems(path, markers)
        for path in self.json_files:
            problems += json_file_problems(path)
        return problems


def relative(pipeline_uri: str, uri: str) -> str:
    assert uri.startswith(pipeline_uri + "/"), uri
    return uri[len(pipeline_uri) + 1:]


def vectors(seed: int, n: int, d: int) -> list[dict]:
    import numpy as np

    X = np.random.default_rng(seed).normal(size=(n, d))
    return [{"id": f"v{i:04d}", "vector": [round(float(x), 6) for x in row]} for i, row in enumerate(X)]


@pytest.fixture(scope="module")
def pipeline(spark, corpus, tmp_path_factory):
    """Inputs, the Airflow plans of the three pipelines, and the undisturbed reference: every
    application run once, in order, in process; the data root is snapshotted around each one, and
    each run keeps the states it passes through (its first publication's commit states)."""
    from nbknn_airflow.plans.knn_neighbors import plan_knn
    from nbknn_airflow.plans.nb_predict import plan_prediction
    from nbknn_airflow.plans.nb_train import plan_training

    base = tmp_path_factory.mktemp("fault")
    root, scratch, snapshots = base / "data", base / "scratch", base / "snapshots"
    uri = root.as_uri()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**spark_environment(scratch), "NBKNN_DATA_ROOT": uri}.items():
            patch.setenv(name, value)
        patch.delenv("NBKNN_INPUT_ROOTS", raising=False)

        write_jsonl(root / "input/nb_train/labelled/part-0.jsonl", corpus("reuters-r8", "train", 200) + BAD_TRAIN_LINES)
        write_jsonl(root / "input/nb_predict/documents/part-0.jsonl", corpus("reuters-r8", "test", 100))
        write_jsonl(root / "input/knn_neighbors/vectors.jsonl", vectors(7, 400, 16))
        copy_tree(root, snapshots / "0-inputs")

        train = plan_training(TRAIN_PARAMS, TRAIN_RUN_ID, RUN_AFTER)
        t = train["uris"]
        staging = relative(uri, t["staging_dir"])
        steps = [
            Step("nb_class_prior", "nb_class_prior.py", train["class_prior_args"],
                 [f"{staging}/_work/class_priors.json", f"{staging}/_work/summaries/class_prior.json",
                  relative(uri, t["rejects"])], scratch=staging),
            Step("nb_term_counts", "nb_term_counts.py", train["term_counts_args"],
                 [f"{staging}/classes", f"{staging}/vocabulary", f"{staging}/term_counts",
                  f"{staging}/_work/summaries/term_counts.json"], scratch=staging),
            Step("nb_publish_model", "nb_publish_model.py", train["publish_args"],
                 [relative(uri, t["version_dir"]), relative(uri, t["latest"]), staging], scratch=staging),
        ]
        by_app: dict[str, Step] = {}
        previous = snapshots / "0-inputs"

        def reference(step: Step) -> None:
            nonlocal previous
            started = time.monotonic()
            step.recorded = FaultPoints(root, states_dir=snapshots / f"states-{step.app}",
                                        exclude=[tree_fingerprint(previous)])
            step.recorded.run(spark, step.script, step.args)
            step.reference_seconds = time.monotonic() - started
            step.before, step.after = previous, snapshots / f"{len(by_app) + 1}-{step.app}"
            copy_tree(root, step.after)
            previous = step.after
            by_app[step.app] = step

        for step in steps:
            reference(step)
        # The prediction plan reads LATEST and the manifest: it is made once the model is published.
        predict = plan_prediction(PREDICT_PARAMS, PREDICT_RUN_ID)
        p = predict["uris"]
        scores_0 = relative(uri, predict["shard_args"][0][predict["shard_args"][0].index("--scores") + 1])
        reference(Step("nb_vectorize", "nb_vectorize.py", predict["vectorize_args"],
                       [relative(uri, p["vectors"]), relative(uri, p["rejects"])]))
        for other in predict["shard_args"][1:]:  # the other shards' passes, needed by the combiner
            run_entry_in_process(spark, "nb_predict_shard.py", other)
        previous = snapshots / "4b-other-shards"
        copy_tree(root, previous)
        reference(Step("nb_predict_shard", "nb_predict_shard.py", predict["shard_args"][0], [scores_0]))
        reference(Step("nb_combine", "nb_combine.py", predict["combine_args"],
                       [relative(uri, p["predictions"]), relative(uri, p["report"])]))
        knn = plan_knn(KNN_PARAMS, KNN_RUN_ID)
        k = knn["uris"]
        reference(Step("knn_neighbors", "knn_neighbors.py", knn["knn_args"],
                       [relative(uri, k["neighbors"]), relative(uri, k["summary"]), relative(uri, k["rejects"])]))

        scores = [Path(root, relative(uri, args[args.index("--scores") + 1])) for args in predict["shard_args"]]
        published = [
            (Path(root, relative(uri, t["rejects"])), ("_SUCCESS",)),
            (Path(root, relative(uri, p["vectors"])), ("_SUCCESS", "_summary.json")),
            *[(path, ("_SUCCESS", "_summary.json")) for path in scores],
            (Path(root, relative(uri, p["predictions"])), ("_SUCCESS", "_summary.json")),
            (Path(root, relative(uri, p["report"])), ("_summary.json", "summary.json", "metrics.json")),
            (Path(root, relative(uri, k["neighbors"])), ("_SUCCESS",)),
        ]
        json_files = [
            Path(root, staging, "_work/summaries/class_prior.json"),
            Path(root, staging, "_work/summaries/term_counts.json"),
            Path(root, relative(uri, k["summary"])),
        ]
        print("[reliability] reference runs (s):", {a: round(st.reference_seconds, 1) for a, st in by_app.items()})
        yield Pipeline(root, uri, scratch, by_app, published, json_files, publish_task_kwargs=train["publish"])


def test_a_50MB_document_is_quarantined_by_spark_submit_in_default_memory(pipeline, figures):
    """One spark-submit of nb_class_prior, in Spark's default local-mode memory, on a 50 MB document
    beside two good ones: the document is quarantined (record_too_large), without an out-of-memory
    error."""
    folder = pipeline.scratch / "big-input"
    write_jsonl(folder / "part-0.jsonl", [big_document_line(50 * 1000 * 1000), *BIG_COMPANIONS])
    model_dir, rejects = f"{pipeline.uri}/scratch/big-model", f"{pipeline.uri}/scratch/big-rejects"
    args = ["--input", folder.as_uri(), "--model-dir", model_dir, "--rejects", rejects, "--max-reject-fraction", "0.5"]
    command = spark_submit_command("nb_class_prior.py", args, "nbknn-big-document")
    run = run_spark_submit(command, dict(os.environ), pipeline.scratch / "logs" / "big-document.log", pipeline.scratch)
    assert run.returncode == 0, run.log
    summary = json.loads(Path(pipeline.root, "scratch/big-model/_work/summaries/class_prior.json").read_text())
    assert summary["records"] == {"read": 3, "accepted": 2, "rejected": 1, "blank_lines": 0,
                                  "labels_changed": {"from_integer": 0, "whitespace_stripped": 0},
                                  "rejected_by_reason": {"record_too_large": 1}}, summary["records"]
    rejected = [json.loads(line) for part in Path(pipeline.root, "scratch/big-rejects").glob("part-*")
                for line in part.read_text().split("\n") if line]
    assert [(r["reason"], len(r["raw"])) for r in rejected] == [("record_too_large", 4096)]
    figures.update(seconds=round(run.seconds, 1), quarantined_50MB_document=True)
    shutil.rmtree(Path(pipeline.root, "scratch"))


APPS = ["nb_class_prior", "nb_term_counts", "nb_publish_model", "nb_vectorize", "nb_predict_shard",
        "nb_combine", "knn_neighbors"]
# The applications that run Spark jobs (nb_publish_model only renames and writes small files).
JOB_APPS = [app for app in APPS if app != "nb_publish_model"]
SCENARIOS = {"first": "first publication", "again": "republication over its own complete output"}


def old_or_new(root: Path, old_root: Path, rel: str, new: dict) -> str | None:
    """What a reader finds at ``rel``: "old" (as in ``old_root``, absent included), "new" (the
    reference), "old, displaced" (absent, with the old one whole in a ``_replaced-`` sibling), or
    None (anything else)."""
    got, old = canonical_output(root / rel), canonical_output(old_root / rel)
    if got == old:
        return "old"
    if got == new:
        return "new"
    target = root / rel
    if not target.exists():
        for sibling in target.parent.glob(f"_replaced-{target.name}-*"):
            if canonical_output(sibling) == old:
                return "old, displaced"
    return None


def stop_at_every_commit_state(pipeline, step: Step, scenario: str, attempt,
                               recorded: FaultPoints | None = None) -> dict:
    """Take ``attempt`` (a run of the application with the given FaultPoints installed) to each
    distinct state of the data root along its commit steps, check what a run stopped there leaves,
    retry from it; the figures. ``recorded``: the FaultPoints of an undisturbed ``attempt`` from
    ``step.before`` already made, which a first publication then reuses."""
    root = pipeline.root
    start = step.before if scenario == "first" else step.after
    reference = outputs_of(step.after, step.outputs)
    published = [rel for rel in step.outputs if not (step.scratch and rel.startswith(step.scratch))]

    # One undisturbed run lists the steps and keeps the data root as it is at the first point of
    # each distinct state: what a run stopped there leaves (the calls are synchronous). Stopped
    # before any step, the data root is the start; after the last, the finished run (both are the
    # retries checked elsewhere: a run over its own output, below, and the reference). On a first
    # publication of the application itself, that run is the reference run (``recorded``).
    if recorded is not None and scenario == "first":
        probe, done = recorded, tree_fingerprint(step.after)
    else:
        copy_tree(start, root)
        probe = FaultPoints(root, states_dir=pipeline.scratch / "states", exclude=[tree_fingerprint(start)])
        attempt(probe)
        assert compare_all(reference, outputs_of(root, step.outputs)).differences == []
        done = tree_fingerprint(root)
    assert probe.steps, "no commit step recorded: the fault points cover nothing"
    points = [kept for fingerprint, kept in probe.kept.items() if fingerprint != done]

    found: dict[str, int] = {}
    for (index, when), state in points:
        where = f"{step.app} stopped {when} step {index} {probe.steps[index]}"
        copy_tree(state, root)  # exactly what a run stopped there leaves

        assert pipeline.visible_problems() == [], where
        for rel in published:
            seen = old_or_new(root, start, rel, reference[rel])
            assert seen is not None, f"{where}: {rel} is neither the old output nor the new one"
            found[seen] = found.get(seen, 0) + 1
        attempt(FaultPoints(root))  # the retry
        comparison = compare_all(reference, outputs_of(root, step.outputs))
        assert comparison.differences == [], f"{where}: the retry gave {comparison.differences}"
        assert leftovers(root) == [], f"{where}: left after the retry: {leftovers(root)}"
    return dict(scenario=SCENARIOS[scenario], commit_steps=len(probe.steps), steps=[str(s) for s in probe.steps],
                states_tried=len(points), published_outputs_seen=found)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("app", APPS)
def test_a_run_stopped_at_any_commit_step_leaves_old_or_new_and_the_retry_converges(
        spark, pipeline, app, scenario, figures):
    step = pipeline.steps[app]
    found = stop_at_every_commit_state(pipeline, step, scenario, lambda faults: faults.run(spark, step.script, step.args),
                                       recorded=step.recorded)
    figures.update(app=app, **found)
    pipeline.results[(app, scenario)] = found["states_tried"]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_publish_task_stopped_at_any_commit_step_leaves_old_or_new_and_the_retry_converges(
        pipeline, scenario, figures):
    """nb_train's publish task as the DAG runs it, in the Airflow worker without Spark
    (nbknn_airflow.model_publish), with the plan's arguments: its commit steps are the module's
    deletions, directory creations and renames (each atomic replacement of a small file included).
    Its outputs must equal those of the Spark application nb_publish_model.py (the reference)."""
    from nbknn_airflow import model_publish

    step = pipeline.steps["nb_publish_model"]
    found = stop_at_every_commit_state(
        pipeline, step, scenario,
        lambda faults: faults.call(model_publish.publish_model, pipeline.publish_task_kwargs, model_publish,
                                   ("delete", "makedirs", "_rename")))
    figures.update(app="publish task", **found)
    pipeline.results[("publish task", scenario)] = found["states_tried"]


def test_a_small_file_stopped_before_its_rename_leaves_no_temporary_file(spark, pipeline):
    """nb_publish_model stopped just before LATEST is replaced, then run again: the hidden temporary
    file the stopped run wrote beside LATEST is gone once the next run has published LATEST
    (nbknn.common.fs.remove_abandoned_temps; the commit-point tests check the same for every small
    file of every application and of the publish task)."""
    step = pipeline.steps["nb_publish_model"]
    root = pipeline.root
    copy_tree(step.after, root)
    probe = FaultPoints(root)
    probe.run(spark, step.script, step.args)
    index = next(i for i, s in enumerate(probe.steps) if s.operation == "fs._replace" and s.target.endswith("LATEST"))
    copy_tree(step.after, root)
    stopped = FaultPoints(root, stop_at=(index, "before"), snapshot=pipeline.scratch / "at-fault")
    with pytest.raises(InjectedKill):
        stopped.run(spark, step.script, step.args)
    copy_tree(pipeline.scratch / "at-fault", root)
    assert [name for name in leftovers(root) if name.endswith(".tmp")], "the stopped run left no temporary file"
    run_entry_in_process(spark, step.script, step.args)
    assert leftovers(root) == []


@pytest.mark.parametrize("app", JOB_APPS)
def test_sigkill_during_a_spark_job_keeps_the_old_output_and_the_retry_converges(
        spark, pipeline, app, figures, monkeypatch):
    step = pipeline.steps[app]
    root = pipeline.root
    copy_tree(step.after, root)  # a retried task, its earlier output in place
    reference = outputs_of(step.after, step.outputs)
    conf = {**json.loads(os.environ["NBKNN_SPARK_CONF"]), "spark.ui.enabled": "true",
            "spark.ui.port": str(free_port()), "spark.ui.showConsoleProgress": "false"}
    monkeypatch.setenv("NBKNN_SPARK_CONF", json.dumps(conf))
    command = spark_submit_command(step.script, step.args, f"nbknn-{app}")

    watcher = Watcher(pipeline.visible_problems)
    watcher.start()
    attempts = []
    try:
        # A run that ends before a job is seen running completed undisturbed (a retry of a finished
        # task, checked below like the others); at most three runs.
        while len(attempts) < 3 and (not attempts or attempts[-1].job is None):
            attempts.append(kill_during_spark_job(
                command, dict(os.environ), pipeline.scratch / "logs" / f"{app}-kill-{len(attempts)}.log",
                pipeline.scratch))
            assert attempts[-1].job is not None or attempts[-1].returncode == 0, attempts[-1].log
    finally:
        watcher.stop()
    kill = attempts[-1]
    figures.update(app=app, job_at_kill=kill.job, report_to_kill_s=kill.reported_to_kill_s, runs=len(attempts),
                   seconds=round(kill.seconds, 1), returncode=kill.returncode, watcher_polls=watcher.polls,
                   partial_outputs_seen=len(watcher.violations))
    assert kill.job is not None, f"{app} ended {len(attempts)} times before a Spark job was seen running:\n{kill.log}"
    assert kill.returncode == -9, kill.returncode
    assert kill.reported_to_kill_s < 0.25, kill.reported_to_kill_s  # SIGKILL right after the report
    assert not watcher.errors, watcher.errors
    assert not watcher.violations, watcher.violations
    published = [rel for rel in step.outputs if not (step.scratch and rel.startswith(step.scratch))]
    untouched = compare_all({rel: reference[rel] for rel in published}, outputs_of(root, published))
    assert untouched.differences == [], f"the killed run changed the old output: {untouched.differences}"

    run_entry_in_process(spark, step.script, step.args)  # the retry
    comparison = compare_all(reference, outputs_of(root, step.outputs))
    assert comparison.differences == [], comparison.differences
    assert leftovers(root) == [], leftovers(root)
    pipeline.kills[app] = kill.job


def test_fault_injection_totals(pipeline, figures):
    """Every application stopped at each of its commit states in both scenarios, and killed during a
    Spark job (all but nb_publish_model, which runs none)."""
    expected = {(app, scenario) for app in [*APPS, "publish task"] for scenario in SCENARIOS}
    if set(pipeline.results) != expected or set(pipeline.kills) != set(JOB_APPS):
        pytest.skip("not every test of the module ran (run the whole module)")
    figures.update(
        applications=len(APPS),
        commit_states_tried=sum(pipeline.results.values()),
        per_app_states={f"{app}/{scenario}": n for (app, scenario), n in sorted(pipeline.results.items())},
        kills_during_spark_job=len(pipeline.kills),
        jobs_killed={app: job["name"] for app, job in pipeline.kills.items()},
    )
    assert all(n > 0 for n in pipeline.results.values()), pipeline.results


def test_the_watcher_sees_partial_outputs(tmp_path):
    """The checks the watcher runs are not vacuous: each kind of partial output is reported."""
    out = tmp_path / "predictions"
    (out / "_temporary").mkdir(parents=True)  # Spark writing in place: no _SUCCESS yet
    assert published_dir_problems(out, ("_SUCCESS",)) == [f"{out} is visible without _SUCCESS"]
    (out / "_SUCCESS").write_text("")
    (out / "_summary.json").write_text('{"job": "nb_comb')
    assert published_dir_problems(out, ("_SUCCESS",)) == [f"{out / '_summary.json'} is visible half-written (16 bytes)"]
    assert published_dir_problems(tmp_path / "absent") == []

    models = tmp_path / "models"
    version = models / "v1"
    (version / "classes").mkdir(parents=True)
    assert model_problems(models) == ["model v1 is visible without manifest.json"]
    (version / "manifest.json").write_text(json.dumps({"shards": [{"shard": 0}, {"shard": 1}]}))
    for table in ("classes", "vocabulary", "term_counts/shard=0"):
        (version / table).mkdir(parents=True, exist_ok=True)
    (version / "classes" / "_SUCCESS").write_text("")
    (version / "vocabulary" / "_SUCCESS").write_text("")
    assert model_problems(models) == ["model v1: term_counts/ is incomplete", "model v1: term_counts/ lacks ['shard=1']"]
    (models / "LATEST").write_text("v2\n")
    assert "LATEST points at v2, which is not published" in model_problems(models)
    (models / "LATEST").write_text("v")
    assert "LATEST is visible half-written: 'v'" in model_problems(models)
