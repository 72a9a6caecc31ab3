"""Single-pass prediction against the same code at an earlier git revision and against MLlib.

    python bench/bench_nb_predict_baseline.py --baseline REVISION [--scale 1] [--reps 5]

Measures a change to prediction on a shared machine, where runs minutes apart are not comparable:
one SparkSession (local[2]), one model trained once with this library, and per repetition, in an
order that rotates from one repetition to the next,

* ``ours``: ``run_predict_single_pass`` of this working tree (read, validate, vectorise, score,
  combine, write the predictions, the report);
* ``baseline``: the same function of ``spark_apps/nbknn`` at REVISION, loaded as the package
  ``nbknn_baseline`` (``bench_nb.baseline_package``) on the same session and model;
* ``mllib_tokenizer``: MLlib's fitted ``Tokenizer`` + ``CountVectorizer`` + ``NaiveBayes``
  transform of the same JSON Lines file, written to Parquet (the issue's baseline).

Every side runs once untimed first. Afterwards both of our sides' predictions are checked equal
(class ids, probabilities within 1e-12). Ratios are per repetition (the sides of one repetition
ran under the same load), with their median, min and max.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import common
from bench_nb import baseline_package, mllib_frame, mllib_pipeline, ours_train, resampled, write_jsonl
from common import Timer, log

SIDES = ("ours", "baseline", "mllib_tokenizer")


def spread(values: list[float]) -> dict:
    return {**common.spread(values), "samples": [round(v, 3) for v in values]}


def per_rep_ratios(timer: Timer, numerator: str, denominator: str) -> dict:
    return spread([a / b for a, b in zip(timer.samples[numerator], timer.samples[denominator])])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, metavar="REVISION")
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--name", default="nb_x1_predict_vs_baseline")
    args = parser.parse_args(argv)

    from nbknn_local import corpora

    results = {"benchmark": "naive_bayes_predict_vs_baseline", "machine": common.machine(),
               "baseline_revision": args.baseline, "scale": args.scale, "repetitions": args.reps}
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-nb-predict-"))
    baseline_dir = baseline_package(args.baseline, workdir)
    sys.path.insert(0, str(baseline_dir))
    spark, startup = common.start_spark(
        "bench-nb-predict", {"spark.executorEnv.PYTHONPATH": f"{common.REPO_ROOT / 'spark_apps'}:{baseline_dir}"})
    results["spark_startup_s"] = round(startup, 3)
    try:
        train = resampled(corpora.documents("20newsgroups", "train"), args.scale, seed=1)
        test = resampled(corpora.documents("20newsgroups", "test"), args.scale, seed=2)
        train_uri = write_jsonl(train, workdir / "input" / "train.jsonl")
        test_uri = write_jsonl(test, workdir / "input" / "test.jsonl")
        results["documents"] = {"train": len(train), "test": len(test)}
        model_dir = ours_train(spark, train_uri, workdir / "model", 1, Timer())
        mllib = mllib_pipeline("multinomial", False).fit(mllib_frame(spark, train_uri, False))

        def single_pass(package: str, run: Path) -> None:
            predict = importlib.import_module(f"{package}.naive_bayes.single_pass").run_predict_single_pass
            spec = importlib.import_module(f"{package}.inputs.documents").InputSpec(uri=test_uri)
            predict(spark, spec, model_dir, (run / "predictions").as_uri(), (run / "report").as_uri(),
                    (run / "rejects").as_uri(), 0.0)

        runs = {
            "ours": lambda rep: single_pass("nbknn", workdir / f"ours-{rep}"),
            "baseline": lambda rep: single_pass("nbknn_baseline", workdir / f"baseline-{rep}"),
            "mllib_tokenizer": lambda rep: mllib.transform(mllib_frame(spark, test_uri, False)).select(
                "id", "prediction").write.mode("overwrite").parquet((workdir / f"mllib-{rep}").as_uri()),
        }
        log("warm-up")
        for side in SIDES:
            runs[side]("warm")
        timer = Timer()
        for rep in range(args.reps):
            order = SIDES[rep % len(SIDES):] + SIDES[:rep % len(SIDES)]
            log(f"repetition {rep}: {', '.join(order)}")
            for side in order:
                with timer.time(side):
                    runs[side](rep)
        for rep in range(args.reps):
            ours, old = ((spark.read.parquet((workdir / f"{side}-{rep}" / "predictions").as_uri())
                          .select("doc_id", "class_id", "probability").orderBy("doc_id").collect())
                         for side in ("ours", "baseline"))
            assert [r[:2] for r in ours] == [r[:2] for r in old], "the two revisions disagree"
            assert max(abs(a[2] - b[2]) for a, b in zip(ours, old)) < 1e-12
        results["seconds"] = {side: spread(timer.samples[side]) for side in SIDES}
        results["ratio_per_rep_ours_over_baseline"] = per_rep_ratios(timer, "ours", "baseline")
        results["ratio_per_rep_ours_over_mllib_tokenizer"] = per_rep_ratios(timer, "ours", "mllib_tokenizer")
        results["ratio_per_rep_baseline_over_mllib_tokenizer"] = per_rep_ratios(timer, "baseline", "mllib_tokenizer")
        results["load_average_at_end"] = common.machine()["load_average_at_start"]
        common.write_results(args.name, results)
        for key in ("ours_over_baseline", "ours_over_mllib_tokenizer", "baseline_over_mllib_tokenizer"):
            r = results[f"ratio_per_rep_{key}"]
            print(f"nb predict x{args.scale} {key}: median {r['median']} (min {r['min']}, max {r['max']})")
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
