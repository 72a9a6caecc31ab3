"""nb_train's two Spark applications as its DAG runs them: one spark-submit each (JVM start-up
included), with the embedded environment's JVM options and Spark properties (``make demo``),
this checkout's code against the code of a git revision, interleaved.

    python bench/bench_train_apps.py --baseline REVISION [--reps 5] [--name NAME]

Both sides count the 20 Newsgroups training split (one JSON Lines file) into a staging directory
of their own; their model tables (classes, vocabulary, term counts) must be equal, or the run
fails. Reported per application and for the pair: each side's median with min and max, and the
per-repetition ratio this/baseline. A short application's cost is mostly its JVM's start-up and
the first use of each Spark component (a Parquet writer, the Python workers), which an in-process
benchmark (bench_nb.py, one warm session) does not see.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import common
import pyarrow.parquet as pq
from common import log, spread

APPS = ("nb_class_prior", "nb_term_counts")


def submit_environment(workdir: Path) -> tuple[dict, list[str]]:
    """(environment, spark-submit options) of the embedded environment's Spark tasks."""
    from nbknn_local.environment import environment

    env = environment(workdir / "data", workdir / "airflow")
    options = ["--master", "local[2]"]
    for key, value in json.loads(env["NBKNN_SPARK_CONF"]).items():
        options += ["--conf", f"{key}={value}"]
    return env, options


def arguments(app: str, input_uri: str, out: Path) -> list[str]:
    common_args = ["--input", input_uri, "--model-dir", (out / "model").as_uri()]
    if app == "nb_class_prior":
        return common_args + ["--rejects", (out / "rejects").as_uri()]
    return common_args + ["--num-shards", "2"]


def run_side(apps_dir: Path, env: dict, options: list[str], input_uri: str, out: Path) -> dict[str, float]:
    """Seconds of each application's spark-submit, run one after the other as the DAG runs them."""
    env = {**env, "PYTHONPATH": str(apps_dir)}
    seconds = {}
    for app in APPS:
        command = [str(common.REPO_ROOT / ".venv" / "bin" / "spark-submit"), *options,
                   str(apps_dir / f"{app}.py"), *arguments(app, input_uri, out)]
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds[app] = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{app} ({apps_dir}) failed:\n{result.stderr[-3000:]}")
    return seconds


def model_tables(out: Path) -> dict[str, list]:
    """The model's tables as sorted rows: what both sides must agree on."""
    tables = {}
    for name in ("classes", "vocabulary", "term_counts"):
        table = pq.read_table(out / "model" / name)
        tables[name] = sorted(map(tuple, (row.values() for row in table.to_pylist())))
    return tables


def side_seconds(runs: list[dict[str, float]], key: str) -> list[float]:
    """One application's seconds per repetition, or both's (``key`` "both")."""
    return [sum(run.values()) if key == "both" else run[key] for run in runs]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", metavar="REVISION", required=True)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--name", default="nb_train_apps")
    args = parser.parse_args(argv)

    from bench_nb import write_jsonl

    from nbknn_local import corpora

    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-train-apps-"))
    results = {"benchmark": "naive_bayes_train_apps", "machine": common.machine(), "baseline_revision": args.baseline}
    try:
        train = corpora.documents("20newsgroups", "train")
        input_uri = write_jsonl(train, workdir / "input" / "train.jsonl")
        results["documents"] = len(train)
        env, options = submit_environment(workdir)
        results["spark_submit_options"] = options
        results["jvm_options"] = env["SPARK_SUBMIT_OPTS"]
        sides = {"this": common.REPO_ROOT / "spark_apps", "baseline": common.extract_revision(args.baseline, "spark_apps", workdir / "baseline")}
        samples: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        log("warm-up (page cache, the class archive)")
        for side, apps_dir in sides.items():
            run_side(apps_dir, env, options, input_uri, workdir / f"warmup-{side}")
        for rep in range(args.reps):
            order = list(sides) if rep % 2 == 0 else list(sides)[::-1]
            tables = {}
            for side in order:
                out = workdir / f"rep{rep}-{side}"
                samples[side].append(run_side(sides[side], env, options, input_uri, out))
                tables[side] = model_tables(out)
                log(f"rep {rep} {side}: " + ", ".join(f"{app} {s:.2f} s" for app, s in samples[side][-1].items()))
            if tables["this"] != tables["baseline"]:
                raise AssertionError(f"rep {rep}: the two sides' model tables differ")
        results["repetitions"] = args.reps
        results["same_model_tables"] = True
        for key in (*APPS, "both"):
            this, baseline = (side_seconds(samples[side], key) for side in ("this", "baseline"))
            results[key] = {"this_s": spread(this), "baseline_s": spread(baseline),
                            "this_over_baseline": spread([a / b for a, b in zip(this, baseline)])}
        common.write_results(args.name, results)
        for key in (*APPS, "both"):
            print(f"{key}: this/baseline={results[key]['this_over_baseline']['median']} "
                  f"({results[key]['this_s']['median']} s against {results[key]['baseline_s']['median']} s)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
