"""Where the single-pass Naive Bayes prediction spends its time at x1 (20 Newsgroups, 7 528 test
documents; ``--scale N``: the test set resampled N times, the model unchanged), next to MLlib's
prediction with its own Tokenizer in the same session, its fitted model in memory and loaded from
where its training saved it (as a prediction job of its own would). Evidence for the goals of
bench_nb.py; the library is not changed.

    python bench/profile_nb_single_pass.py [--reps 3] [--scale 1] [--baseline REVISION --name NAME]

Per repetition (interleaved with MLlib's): the run's wall time, its Spark jobs (count and summed
duration, from the driver's status REST API) and the rest, which is driver-side Python (model
load and broadcast, planning through py4j). One more run under cProfile
splits the driver's time by library function (profiler overhead included: read it as shares).
With ``--baseline``, the library at that git revision predicts too, interleaved, from the same
model: the measure of a change.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import socket
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import common
from common import Timer, log, spread

# Library functions whose cumulative time the profiled run reports (module file, function).
PHASES = [
    ("model_reader.py", "read_model_manifest"),
    # The model's reads run in threads of their own, which the profile does not follow: this is
    # the main thread's wait for them, the input's planning included.
    ("single_pass.py", "_model_and_input"),
    ("documents.py", "read_documents"),
    ("single_pass.py", "_write_predictions"),
    ("outputs.py", "small_output_columns"),
    ("vectorize.py", "written_ids_repeat"),
    ("vectorize.py", "quarantine"),
    ("combine.py", "confusion_and_counts"),
    ("outputs.py", "publish_output"),
    ("report.py", "publish_report"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_jobs(ui_port: int, app_id: str) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/v1/applications/{app_id}/jobs") as response:
        return json.load(response)


def job_seconds(job: dict) -> float:
    def at(text: str) -> datetime:
        return datetime.strptime(text.removesuffix("GMT"), "%Y-%m-%dT%H:%M:%S.%f")

    return (at(job["completionTime"]) - at(job["submissionTime"])).total_seconds()


def phase_seconds(profile: cProfile.Profile) -> dict[str, float]:
    stats = pstats.Stats(profile).stats
    found = {}
    for (filename, _, function), (_, _, _, cumulative, _) in stats.items():
        for module, name in PHASES:
            if function == name and "/nbknn/" in filename and filename.endswith(f"/{module}"):
                found[name] = found.get(name, 0.0) + cumulative
    return {name: round(found.get(name, 0.0), 3) for _, name in PHASES}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scale", type=int, default=1, help="resampling factor of the test set (the model stays x1's)")
    parser.add_argument("--name", default="nb_x1_single_pass_profile")
    parser.add_argument("--baseline", metavar="REVISION", help="also predict with the library at this git revision")
    args = parser.parse_args(argv)

    import importlib
    import sys

    from bench_nb import BASELINE_PACKAGE, baseline_package, mllib_run, ours_train, resampled, write_jsonl

    from nbknn.inputs.documents import InputSpec
    from nbknn.naive_bayes.single_pass import run_predict_single_pass
    from nbknn_local import corpora

    ui_port = free_port()
    results = {"benchmark": "naive_bayes_single_pass_profile", "machine": common.machine()}
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-single-pass-"))
    extra_conf = {"spark.ui.enabled": "true", "spark.ui.port": str(ui_port)}
    runners = {"ours": run_predict_single_pass}
    if args.baseline:
        folder = baseline_package(args.baseline, workdir)
        sys.path.insert(0, str(folder))
        extra_conf["spark.executorEnv.PYTHONPATH"] = f"{common.REPO_ROOT / 'spark_apps'}:{folder}"
        runners["baseline"] = importlib.import_module(f"{BASELINE_PACKAGE}.naive_bayes.single_pass").run_predict_single_pass
        results["baseline_revision"] = args.baseline
    spark, startup = common.start_spark("bench-nb-single-pass", extra_conf)
    app_id = spark.sparkContext.applicationId
    results["spark_startup_s"] = round(startup, 3)
    try:
        train = corpora.documents("20newsgroups", "train")
        test = resampled(corpora.documents("20newsgroups", "test"), args.scale, seed=2)
        results["scale"] = args.scale
        results["documents"] = {"train": len(train), "test": len(test)}
        train_uri = write_jsonl(train, workdir / "train.jsonl")
        test_uri = write_jsonl(test, workdir / "test.jsonl")
        timer = Timer()
        model_dir = ours_train(spark, train_uri, workdir / "model", 1, timer)

        def predict(tag: str, side: str = "ours") -> tuple[float, list[dict]]:
            before = {job["jobId"] for job in spark_jobs(ui_port, app_id)}
            run = (workdir / tag).as_uri()
            spec = InputSpec(uri=test_uri)
            if side == "baseline":
                spec = importlib.import_module(f"{BASELINE_PACKAGE}.inputs.documents").InputSpec(uri=test_uri)
            started = time.perf_counter()
            runners[side](spark, spec, model_dir, f"{run}/predictions", f"{run}/report", f"{run}/rejects", 0.0)
            seconds = time.perf_counter() - started
            return seconds, [job for job in spark_jobs(ui_port, app_id) if job["jobId"] not in before]

        log("warm-up")
        for side in runners:
            predict(f"warmup-{side}", side)
        mllib_run(spark, train_uri, test_uri, workdir / "mllib-warmup", "multinomial", False, Timer(), "mllib",
                  saved=True)
        reps = []
        for rep in range(args.reps):
            log(f"rep {rep}")
            seconds, jobs = predict(f"run{rep}")
            mllib_run(spark, train_uri, test_uri, workdir / f"mllib-{rep}", "multinomial", False, timer, "mllib",
                      saved=True)
            job_total = sum(job_seconds(job) for job in jobs)
            if "baseline" in runners:
                timer.add("baseline", predict(f"baseline{rep}", "baseline")[0])
            reps.append({"ours_s": round(seconds, 3), "mllib_s": round(timer.samples["mllib.predict"][-1], 3),
                         "mllib_loaded_s": round(timer.samples["mllib.predict_loaded"][-1], 3),
                         "spark_jobs": len(jobs), "spark_jobs_s": round(job_total, 3),
                         "outside_jobs_s": round(seconds - job_total, 3),
                         "jobs": [{"name": job["name"][:80], "s": round(job_seconds(job), 3)}
                                  for job in sorted(jobs, key=lambda job: job["jobId"])]})
        profile = cProfile.Profile()
        profile.enable()
        profiled_seconds, _ = predict("profiled")
        profile.disable()
        results["repetitions"] = reps
        results["ours_s"] = spread([r["ours_s"] for r in reps])
        results["mllib_own_tokenizer_s"] = spread([r["mllib_s"] for r in reps])
        results["ours_over_mllib"] = spread([r["ours_s"] / r["mllib_s"] for r in reps])
        results["mllib_loading_its_model_s"] = spread([r["mllib_loaded_s"] for r in reps])
        results["ours_over_mllib_loading_its_model"] = spread([r["ours_s"] / r["mllib_loaded_s"] for r in reps])
        if "baseline" in runners:
            results["baseline_s"] = spread(timer.samples["baseline"])
            results["ours_over_baseline"] = spread([r["ours_s"] / b for r, b in zip(reps, timer.samples["baseline"])])
        results["spark_jobs_s"] = spread([r["spark_jobs_s"] for r in reps])
        results["outside_jobs_s"] = spread([r["outside_jobs_s"] for r in reps])
        results["profiled_run"] = {"seconds_with_profiler": round(profiled_seconds, 3),
                                   "cumulative_s": phase_seconds(profile)}
        common.write_results(args.name, results)
        log(f"nb predict x{args.scale} single pass: ours/mllib={results['ours_over_mllib']['median']}, "
            f"ours/mllib_loading_its_model={results['ours_over_mllib_loading_its_model']['median']} "
            f"(jobs {results['spark_jobs_s']['median']} s, outside jobs {results['outside_jobs_s']['median']} s)")
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
