"""Vectorising without a shuffle: the library's ``document_vectors`` (explode -> groupBy(doc, term)
-> join vocabulary -> groupBy(doc)) vs a per-row lookup with MLlib's ``CountVectorizerModel``
built from the same vocabulary in term-id order (no shuffle), on the 20 Newsgroups test set.

    python bench/profile_nb_vectorize.py [--reps 2]

The vocabulary is the sorted set of training terms, i.e. this pipeline's term ids (ranks in sorted
order). Both outputs are written to Parquet and checked equal (same term ids and counts per
document). Evidence for a proposal; the library is not changed.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import common
from common import Timer, log


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--name", default="nb_profile_vectorize")
    args = parser.parse_args(argv)

    from bench_nb import write_jsonl
    from pyspark.ml.feature import CountVectorizerModel
    from pyspark.sql import functions as F

    from nbknn.inputs.documents import InputSpec, accepted_documents, read_documents
    from nbknn.inputs.tokenizer import TokenizerConfig, tokenize, tokens_column

    # The shuffle-based vectoriser this profile measured; since then the library's default is an
    # in-row lookup (nbknn.naive_bayes.vectorize.document_vectors) and the join is its large-vocabulary fallback.
    from nbknn.naive_bayes.vectorize import document_vectors_joined as document_vectors
    from nbknn_local import corpora

    results = {"benchmark": "naive_bayes_vectorize_profile", "machine": common.machine()}
    spark, startup = common.start_spark("bench-nb-vectorize")
    results["spark_startup_s"] = round(startup, 3)
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-vectorize-"))
    try:
        train, test = corpora.documents("20newsgroups", "train"), corpora.documents("20newsgroups", "test")
        terms = sorted({t for d in train for t in tokenize(d["text"])})
        vocabulary = spark.createDataFrame(list(enumerate(terms)), "term_id int, term string")
        vocabulary.write.parquet((workdir / "vocabulary").as_uri())
        vocabulary = spark.read.parquet((workdir / "vocabulary").as_uri())
        test_uri = write_jsonl(test, workdir / "test.jsonl")
        tokenizer = TokenizerConfig()
        spec = InputSpec(uri=test_uri)
        lookup = CountVectorizerModel.from_vocabulary(terms, inputCol="tokens", outputCol="features")
        timer = Timer()
        for rep in range(args.reps + 1):  # the first round warms up and is not kept
            log(f"rep {rep}")
            accepted = accepted_documents(read_documents(spark, spec, labelled=False))
            with timer.time("library_document_vectors"):
                document_vectors(accepted, vocabulary, tokenizer).write.parquet((workdir / f"lib{rep}").as_uri())
            with timer.time("countvectorizer_lookup"):
                tokens = accepted.select("doc_id", "label", tokens_column(F.col("text"), tokenizer).alias("tokens"))
                features = lookup.transform(tokens)
                features.selectExpr("doc_id", "label", "features", "size(tokens) as tokens").write.parquet(
                    (workdir / f"cv{rep}").as_uri())
            if rep == 0:
                timer.samples.clear()
        library = spark.read.parquet((workdir / f"lib{args.reps}").as_uri()).select("doc_id", "term_ids", "counts")
        lookup_rows = spark.read.parquet((workdir / f"cv{args.reps}").as_uri()).select("doc_id", "features").collect()
        got = {r["doc_id"]: (r["features"].indices.tolist(), [int(v) for v in r["features"].values]) for r in lookup_rows}
        expected = {r["doc_id"]: (list(r["term_ids"]), list(r["counts"])) for r in library.collect()}
        results["lookup_equals_library"] = got == expected
        results["timings"] = timer.summary()
        results["summary"] = {
            "library_document_vectors_s": round(timer.median("library_document_vectors"), 3),
            "countvectorizer_lookup_s": round(timer.median("countvectorizer_lookup"), 3),
            "ratio_library_over_lookup": common.ratio(timer.median("library_document_vectors"),
                                                       timer.median("countvectorizer_lookup")),
            "repetitions": args.reps,
        }
        log(str(results["summary"]) + f" equal={results['lookup_equals_library']}")
        common.write_results(args.name, results)
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
