"""nb_train's publish step: the Spark application (spark-submit nb_publish_model.py) against the
Airflow task's function (nbknn_airflow.model_publish.publish_model), on the same staged model.

    python bench/bench_publish.py [--reps 3]

A 20 Newsgroups model is trained once (class prior and term counts, in process) into a staging
directory; every repetition publishes a fresh copy of it each way, the two taking turns first.
The Spark side is timed as its task pays it: the whole spark-submit process (JVM start-up
included, as every Spark task of the DAG starts its own JVM). Both publications must be the
same: identical files, and manifests equal but for ``created_at``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import log

VERSION = "20260301T000000Z-bench"


def stage(workdir: Path) -> Path:
    from bench_nb import write_jsonl

    from nbknn.inputs.documents import InputSpec
    from nbknn.inputs.tokenizer import TokenizerConfig
    from nbknn.naive_bayes.class_prior import run_class_prior
    from nbknn.naive_bayes.term_counts import run_term_counts
    from nbknn_local import corpora

    spark, _ = common.start_spark("bench-publish-stage")
    try:
        uri = write_jsonl(corpora.documents("20newsgroups", "train"), workdir / "input" / "train.jsonl")
        staged = workdir / "staged"
        spec = InputSpec(uri=uri)
        run_class_prior(spark, spec, staged.as_uri(), (workdir / "rejects").as_uri(), 0.0)
        run_term_counts(spark, spec, staged.as_uri(), TokenizerConfig(), num_shards=4)
    finally:
        spark.stop()
    return staged


def arguments(root: Path) -> dict:
    models = f"{root.as_uri()}/models/naive_bayes"
    return {"staging_dir": f"{models}/_staging/{VERSION}", "version_dir": f"{models}/{VERSION}",
            "latest_uri": f"{models}/LATEST", "version": VERSION, "model_type": "multinomial", "alpha": 1.0,
            "fit_prior": True, "lineage": {"run_id": "bench", "mode": "full"}}


def prepare(staged: Path, root: Path) -> dict:
    args = arguments(root)
    shutil.copytree(staged, Path(args["staging_dir"].removeprefix("file://")))
    return args


def publish_spark(args: dict) -> float:
    command = [str(common.REPO_ROOT / ".venv" / "bin" / "spark-submit"), "--master", common.MASTER,
               "--driver-memory", common.DRIVER_MEMORY, str(common.REPO_ROOT / "spark_apps" / "nb_publish_model.py"),
               "--staging-dir", args["staging_dir"], "--version-dir", args["version_dir"], "--latest", args["latest_uri"],
               "--version", args["version"], "--model-type", args["model_type"], "--alpha", repr(args["alpha"]),
               "--fit-prior", "--lineage", json.dumps(args["lineage"])]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "PYTHONPATH": str(common.REPO_ROOT / "spark_apps")}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - started


def publish_airflow(args: dict) -> float:
    from nbknn_airflow.model_publish import publish_model

    started = time.perf_counter()
    publish_model(**args)
    return time.perf_counter() - started


def published(root: Path) -> dict:
    """Every file of the published model (relative path -> bytes); the manifest without created_at."""
    models = root / "models" / "naive_bayes"
    files = {}
    for path in sorted(models.rglob("*")):
        if path.is_file() and not path.name.endswith(".crc"):
            data = path.read_bytes()
            if path.name == "manifest.json":
                manifest = json.loads(data)
                manifest.pop("created_at")
                data = json.dumps(manifest, sort_keys=True).encode()
            files[str(path.relative_to(models))] = data
    return files


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--name", default="nb_publish")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-publish-"))
    results = {"benchmark": "naive_bayes_publish", "machine": common.machine()}
    try:
        log("staging a 20 Newsgroups model")
        staged = stage(workdir)
        samples: dict[str, list[float]] = {"spark_submit": [], "airflow_task": []}
        same = True
        for rep in range(args.reps):
            sides = [("spark_submit", publish_spark), ("airflow_task", publish_airflow)]
            outputs = {}
            for name, publish in sides if rep % 2 == 0 else sides[::-1]:
                root = workdir / f"rep{rep}-{name}"
                samples[name].append(publish(prepare(staged, root)))
                outputs[name] = published(root)
                log(f"rep {rep}: {name} {samples[name][-1]:.2f} s")
            same = same and outputs["spark_submit"] == outputs["airflow_task"]
        results["repetitions"] = args.reps
        results["same_publication"] = same
        results["seconds"] = {name: {"median_s": round(statistics.median(v), 3), "min_s": round(min(v), 3),
                                     "max_s": round(max(v), 3), "samples_s": [round(x, 3) for x in v]}
                              for name, v in samples.items()}
        common.write_results(args.name, results)
        print(f"publish: spark-submit {results['seconds']['spark_submit']['median_s']} s, Airflow task "
              f"{results['seconds']['airflow_task']['median_s']} s (medians of {args.reps}); same publication: {same}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
