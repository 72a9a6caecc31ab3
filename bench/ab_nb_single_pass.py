"""The single-pass prediction against the library at another git revision, and nothing else, in
one Spark session: the measure of one change.

    python bench/ab_nb_single_pass.py --baseline REVISION [--scale 1] [--runs 10] [--name NAME]

Both versions predict 20 Newsgroups' test set (``--scale N``: resampled N times) with one model
trained by this revision. Each side first predicts twice unmeasured (the first prediction of a
session pays for the JVM's warm-up); then each run predicts with both, the order alternating
from run to run, so that neither side always follows the other. Reported: the per-run ratio
(this revision over the baseline) as a median with min and max, and each side's times.
``profile_nb_single_pass.py --baseline`` also times MLlib between the two, which spreads the
ratio more than a change of a few per cent.

Both versions share the session's tokeniser jar (this revision's): a baseline whose Python side
calls a class the jar no longer has cannot be measured here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

import common
from common import Timer, log, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REVISION", required=True)
    parser.add_argument("--scale", type=int, default=1, help="resampling factor of the test set")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--name", help="results file name (default: nb_x<scale>_ab_vs_<revision>)")
    args = parser.parse_args()

    from bench_nb import BASELINE_PACKAGE, baseline_package, ours_train, resampled, write_jsonl

    from nbknn_local import corpora

    workdir = Path(tempfile.mkdtemp(prefix="nb-ab-"))
    folder = baseline_package(args.baseline, workdir)
    sys.path.insert(0, str(folder))
    spark, startup = common.start_spark(
        "nb-ab", {"spark.executorEnv.PYTHONPATH": f"{common.REPO_ROOT / 'spark_apps'}:{folder}"})
    try:
        sides = {
            "ours": (importlib.import_module("nbknn.naive_bayes.single_pass").run_predict_single_pass,
                     importlib.import_module("nbknn.inputs.documents").InputSpec),
            "baseline": (importlib.import_module(f"{BASELINE_PACKAGE}.naive_bayes.single_pass").run_predict_single_pass,
                         importlib.import_module(f"{BASELINE_PACKAGE}.inputs.documents").InputSpec),
        }
        train_uri = write_jsonl(corpora.documents("20newsgroups", "train"), workdir / "train.jsonl")
        test = resampled(corpora.documents("20newsgroups", "test"), args.scale, seed=2)
        test_uri = write_jsonl(test, workdir / "test.jsonl")
        model_dir = ours_train(spark, train_uri, workdir / "model", 1, Timer())
        timer = Timer()

        def predict(side: str, tag: str, measured: bool) -> None:
            run_predict, input_spec = sides[side]
            run = (workdir / tag).as_uri()
            with timer.time(side if measured else "warm-up"):
                run_predict(spark, input_spec(uri=test_uri), model_dir, f"{run}/predictions", f"{run}/report",
                            f"{run}/rejects", 0.0)

        log("warm-up")
        for side in sides:
            for warm in range(2):
                predict(side, f"warm-{side}-{warm}", measured=False)
        for run in range(args.runs):
            for side in (("ours", "baseline") if run % 2 == 0 else ("baseline", "ours")):
                predict(side, f"{side}-{run}", measured=True)
            log(f"run {run}: ours {timer.samples['ours'][-1]:.3f} s, baseline {timer.samples['baseline'][-1]:.3f} s")
        ratios = [ours / baseline for ours, baseline in zip(timer.samples["ours"], timer.samples["baseline"])]
        results = {
            "benchmark": "naive_bayes_single_pass_ab",
            "machine": common.machine(),
            "baseline_revision": args.baseline,
            "spark_startup_s": round(startup, 3),
            "scale": args.scale,
            "test_documents": len(test),
            "runs": args.runs,
            "ours_s": spread(timer.samples["ours"]),
            "baseline_s": spread(timer.samples["baseline"]),
            "ours_over_baseline": spread(ratios),
        }
        common.write_results(args.name or f"nb_x{args.scale}_ab_vs_{args.baseline}", results)
        log(f"nb single pass x{args.scale}: ours/baseline={results['ours_over_baseline']['median']} "
            f"(min {results['ours_over_baseline']['min']}, max {results['ours_over_baseline']['max']})")
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
