"""Where this pipeline's Naive Bayes prediction spends its time (20 Newsgroups test set), with
measured alternatives for the slowest step. Evidence for proposals; the library is not changed.

    python bench/profile_nb_predict.py [--reps 2]

Steps timed (medians): the library's run_vectorize / run_predict_shard / run_combine, then the
parts of run_vectorize separately, each a Spark action on the same input:

* ``parse``: read_documents (JSON Lines parse + validation), one count per reject reason;
* ``parse+duplicate_window``: the same with ``with_duplicate_ids_rejected`` (a Window over whole
  records: a shuffle of every text);
* ``duplicate_ids_only``: the duplicate check as a groupBy over the ids alone;
* ``vectors_write_library``: the library's ``document_vectors`` write (what run_vectorize writes);
* ``vectors_write_prototype``: a prototype with one parse, one tokenisation and a broadcast
  vocabulary join (below), whose output is checked equal to the library's;
* ``report``: metrics of run_combine, then the confusion PNG and the page as the DAG's report task
  draws them;
* MLlib's CountVectorizer + NaiveBayes transform of the same documents, for scale.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import common
from common import Timer, log


def prototype_vectors(accepted, vocabulary, tokenizer):
    """document_vectors with one tokenisation: explode_outer keeps token-less documents, the token
    total is summed in the same aggregation as the known entries, the vocabulary is broadcast."""
    from pyspark.sql import functions as F

    from nbknn.inputs.tokenizer import tokens_column

    per_term = (
        accepted.select("doc_id", "label", F.explode_outer(tokens_column(F.col("text"), tokenizer)).alias("term"))
        .groupBy("doc_id", "label", "term")
        .agg(F.count("term").cast("int").alias("count"))
    )
    known = per_term.join(F.broadcast(vocabulary.select("term", "term_id")), "term", "left")
    entry = F.when(F.col("term_id").isNotNull(), F.struct("term_id", "count"))
    per_doc = known.groupBy("doc_id", "label").agg(
        F.array_sort(F.collect_list(entry)).alias("entries"), F.sum("count").cast("int").alias("tokens")
    )
    return per_doc.select(
        "doc_id", "label", F.col("entries.term_id").alias("term_ids"), F.col("entries.count").alias("counts"),
        F.coalesce("tokens", F.lit(0)).alias("tokens"),
    ).sortWithinPartitions("doc_id")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--name", default="nb_profile")
    args = parser.parse_args(argv)

    from bench_nb import mllib_frame, mllib_run, ours_predict, ours_train, write_jsonl
    from pyspark.ml.feature import CountVectorizer
    from pyspark.sql import functions as F

    from nbknn import contract
    from nbknn.inputs.documents import InputSpec, accepted_documents, read_documents
    from nbknn.inputs.tokenizer import TokenizerConfig
    from nbknn.naive_bayes import schemas
    from nbknn.naive_bayes.class_prior import run_class_prior
    from nbknn.naive_bayes.metrics import classification_metrics
    from nbknn.naive_bayes.report_pictures import confusion_png, report_html
    from nbknn.naive_bayes.term_counts import class_term_counts, run_term_counts, tokenized_documents

    # The shuffle-based vectoriser this profile measured (the library's large-vocabulary fallback
    # since then; run_vectorize now counts in-row, see profile_nb_vectorize / NOTES.md).
    from nbknn.naive_bayes.vectorize import document_vectors_joined as document_vectors
    from nbknn.naive_bayes.vectorize import with_duplicate_ids_rejected
    from nbknn_local import corpora

    results = {"benchmark": "naive_bayes_predict_profile", "machine": common.machine()}
    spark, startup = common.start_spark("bench-nb-profile")
    results["spark_startup_s"] = round(startup, 3)
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-profile-"))
    try:
        train, test = corpora.documents("20newsgroups", "train"), corpora.documents("20newsgroups", "test")
        train_uri = write_jsonl(train, workdir / "train.jsonl")
        test_uri = write_jsonl(test, workdir / "test.jsonl")
        timer = Timer()
        model_dir = ours_train(spark, train_uri, workdir / "model", 1, timer)
        model_dir_base = (workdir / "model" / "models").as_uri()
        spec, tokenizer = InputSpec(uri=test_uri), TokenizerConfig()
        vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(contract.vocabulary_uri(model_dir))
        ours_predict(spark, model_dir, test_uri, workdir / "warm", timer, "warmup")
        for rep in range(args.reps):
            log(f"rep {rep}")
            ours_predict(spark, model_dir, test_uri, workdir / f"run{rep}", timer, "library")
            mllib_run(spark, train_uri, test_uri, workdir / "mllib", "multinomial", True, timer, "mllib")
            with timer.time("parse"):
                read_documents(spark, spec, labelled=False).groupBy("reject_reason").count().collect()
            with timer.time("parse+duplicate_window"):
                with_duplicate_ids_rejected(read_documents(spark, spec, labelled=False)).groupBy(
                    "reject_reason").count().collect()
            with timer.time("duplicate_ids_only"):
                read_documents(spark, spec, labelled=False).groupBy("doc_id").count().where("count > 1").count()
            documents = with_duplicate_ids_rejected(read_documents(spark, spec, labelled=False))
            library_uri = (workdir / f"vectors-library-{rep}").as_uri()
            with timer.time("vectors_write_library"):
                document_vectors(accepted_documents(documents), vocabulary, tokenizer).write.parquet(library_uri)
            prototype_uri = (workdir / f"vectors-prototype-{rep}").as_uri()
            with timer.time("vectors_write_prototype"):
                accepted = accepted_documents(read_documents(spark, spec, labelled=False))
                prototype_vectors(accepted, vocabulary, tokenizer).write.parquet(prototype_uri)
            # Training: the counting core of run_term_counts (parse, tokenise, count per (class, term),
            # write) as one action, against the whole job and MLlib's CountVectorizer fit alone.
            train_spec = InputSpec(uri=train_uri)
            run_class_prior(spark, train_spec, f"{model_dir_base}/_staging/p{rep}", f"{model_dir_base}/rejects", 0.0)
            with timer.time("train_term_counts_job"):
                run_term_counts(spark, train_spec, f"{model_dir_base}/_staging/p{rep}", tokenizer, num_shards=1)
            with timer.time("train_count_core"):
                class_term_counts(tokenized_documents(accepted_documents(read_documents(spark, train_spec)), tokenizer)
                                  ).write.parquet((workdir / f"class-terms-{rep}").as_uri())
            with timer.time("mllib_countvectorizer_fit"):
                CountVectorizer(inputCol="tokens", outputCol="features", vocabSize=1 << 24).fit(
                    mllib_frame(spark, train_uri, True))
            metrics_rows = [(d["label"], d["label"], 1) for d in test]
            with timer.time("report"):
                metrics = classification_metrics(metrics_rows)
                confusion_png(metrics["labels"], metrics["confusion_matrix"], "profile")
                report_html(metrics, "confusion_matrix.png", "profile")
        columns = ["doc_id", "label", "term_ids", "counts", "tokens"]
        library = spark.read.parquet(library_uri).select(*columns)
        prototype = spark.read.parquet(prototype_uri).select(
            "doc_id", "label", F.coalesce("term_ids", F.array().cast("array<int>")).alias("term_ids"),
            F.coalesce("counts", F.array().cast("array<int>")).alias("counts"), "tokens")
        results["prototype_equals_library"] = (
            library.count() == prototype.count() and library.exceptAll(prototype).count() == 0
            and prototype.exceptAll(library).count() == 0
        )
        results["timings"] = timer.summary()
        med = timer.median
        results["summary"] = {
            "library_predict_s": round(med("library"), 3),
            "library_vectorize_s": round(med("library.vectorize"), 3),
            "library_shard_pass_s": round(med("library.shards"), 3),
            "library_combine_s": round(med("library.combine"), 3),
            "mllib_predict_s": round(med("mllib.predict"), 3),
            "parse_s": round(med("parse"), 3),
            "parse_plus_duplicate_window_s": round(med("parse+duplicate_window"), 3),
            "duplicate_ids_only_s": round(med("duplicate_ids_only"), 3),
            "vectors_write_library_s": round(med("vectors_write_library"), 3),
            "vectors_write_prototype_s": round(med("vectors_write_prototype"), 3),
            "report_s": round(med("report"), 3),
            "train_term_counts_job_s": round(med("train_term_counts_job"), 3),
            "train_count_core_s": round(med("train_count_core"), 3),
            "mllib_countvectorizer_fit_s": round(med("mllib_countvectorizer_fit"), 3),
        }
        log(json.dumps(results["summary"]))
        common.write_results(args.name, results)
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
