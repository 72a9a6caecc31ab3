"""How close can NB prediction get to MLlib's time? The part no scorer can skip, against MLlib.

Any prediction run of this pipeline reads its JSON Lines input with the record checks of the
quarantine and tokenises every document with the model's tokeniser (scikit-learn's token pattern,
which MLlib's whitespace ``Tokenizer`` does not reproduce). This benchmark times that floor (the
checked read alone; read and tokenise; read, the duplicate-id window over whole records that
prediction ran before it checked the written ids instead, and tokenise; each written to Spark's
``noop`` sink), our whole prediction, and MLlib's
prediction with its own ``Tokenizer`` (transform and write, the model trained beforehand),
interleaved, on the same resampled 20 Newsgroups test set as ``bench_nb.py``.
When the floor alone takes more than the goal's share of MLlib's time, no faster scorer or writer
reaches the goal.

    .venv/bin/python bench/bench_nb_floor.py --scale 20 --reps 3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common
from bench_nb import mllib_frame, mllib_pipeline, ours_predict, ours_train, resampled, write_jsonl
from common import Timer, log


def read_only(spark, test_uri: str):
    """The checked read of the documents, as every prediction run does it."""
    from nbknn.inputs.documents import InputSpec, accepted_documents, read_documents

    return accepted_documents(read_documents(spark, InputSpec(uri=test_uri), labelled=False)).select("doc_id")


def read_and_tokenise(spark, test_uri: str, duplicate_check: bool = False):
    """The checked read and the model's tokeniser; with ``duplicate_check``, the duplicate-id
    window over whole records too (before tokenising, as prediction ran it until it checked the
    written ids instead)."""
    from nbknn.inputs.documents import InputSpec, accepted_documents, read_documents
    from nbknn.inputs.tokenizer import TokenizerConfig
    from nbknn.naive_bayes.vectorize import tokenized, with_duplicate_ids_rejected

    documents = read_documents(spark, InputSpec(uri=test_uri), labelled=False)
    if duplicate_check:
        documents = with_duplicate_ids_rejected(documents)
    return tokenized(accepted_documents(documents), TokenizerConfig())


def per_rep_ratios(timer: Timer, ours: str, theirs: str) -> dict:
    return common.spread([a / b for a, b in zip(timer.samples[ours], timer.samples[theirs])])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=20, help="resampling factor of the 20 Newsgroups test set")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--name", default=None, help="results file name (default nb_floor_x<scale>)")
    args = parser.parse_args(argv)

    from nbknn_local import corpora

    spark, startup = common.start_spark("bench-nb-floor")
    log(f"Spark started in {startup:.1f} s")
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-nb-floor-"))
    base_train, base_test = corpora.documents("20newsgroups", "train"), corpora.documents("20newsgroups", "test")
    # Both models from the training set at x1: resampling adds no term, so the vocabulary, and
    # with it the work per document, is the one of bench_nb.py's larger scales.
    train_uri = write_jsonl(base_train, workdir / "train.jsonl")
    test = resampled(base_test, args.scale, seed=2)
    test_uri = write_jsonl(test, workdir / "test.jsonl")
    timer = Timer()
    model_dir = ours_train(spark, train_uri, workdir / "ours", 1, Timer())
    mllib = mllib_pipeline("multinomial", False).fit(mllib_frame(spark, train_uri, False))
    # Warm-up (untimed): each side once.
    ours_predict(spark, model_dir, test_uri, workdir / "warm-ours", Timer(), "w")
    mllib.transform(mllib_frame(spark, test_uri, False)).select("id", "prediction").write.mode("overwrite").parquet(
        (workdir / "warm-mllib").as_uri())
    for rep in range(args.reps):
        log(f"x{args.scale} repetition {rep + 1} of {args.reps}")
        with timer.time("mllib_tokenizer.predict"):
            mllib.transform(mllib_frame(spark, test_uri, False)).select("id", "prediction").write.mode(
                "overwrite").parquet((workdir / f"mllib-{rep}").as_uri())
        with timer.time("ours.read"):
            read_only(spark, test_uri).write.format("noop").mode("overwrite").save()
        with timer.time("ours.read_tokenise"):
            read_and_tokenise(spark, test_uri).write.format("noop").mode("overwrite").save()
        with timer.time("ours.read_dedup_tokenise"):
            read_and_tokenise(spark, test_uri, duplicate_check=True).write.format("noop").mode("overwrite").save()
        ours_predict(spark, model_dir, test_uri, workdir / f"ours-{rep}", timer, "ours.predict")
    spark.stop()

    results = {
        "benchmark": "naive_bayes_prediction_floor",
        "machine": common.machine(),
        "question": "does the part of a prediction run no scorer can skip (checked read, tokenising) "
                    "already take more than the goal's share of MLlib's prediction time",
        "scale": args.scale,
        "test_documents": len(test),
        "repetitions": args.reps,
        "spark_startup_s": round(startup, 3),
        "timings": timer.summary(),
        "ratio_per_rep_over_mllib_tokenizer": {
            name: per_rep_ratios(timer, f"ours.{name}", "mllib_tokenizer.predict")
            for name in ("read", "read_tokenise", "read_dedup_tokenise", "predict")
        },
    }
    path = common.write_results(args.name or f"nb_floor_x{args.scale}", results)
    for name, spread in results["ratio_per_rep_over_mllib_tokenizer"].items():
        print(f"nb predict x{args.scale} floor: ours.{name}/mllib = {spread['median']} "
              f"(min {spread['min']}, max {spread['max']})")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
