"""Scale beyond the dense model: synthetic corpora on a grid of classes x vocabulary, through MLlib
``NaiveBayes`` (hashed features) and through this pipeline with a per-shard entry budget.

    python bench/bench_scale.py [--timeout 300] [--grid small]

Every cell runs in a subprocess of its own (own JVM, killed at ``--timeout``), so a cell that
runs out of memory or time does not take the others down, and its peak memory is its own.

Corpus of a cell (C classes, V terms): D = C * docs_per_class documents of L tokens, written once
to Parquet (not timed). Token j of document i is term ``(i * L + j) * 2654435761 mod V``: a
bijection on the first V token positions, so with D * L >= V every one of the V terms occurs and
the model really has V terms; label of document i is ``i mod C``. Entries ((class, term) pairs)
are about min(D * L, C * V).

* MLlib: ``HashingTF(numFeatures=V)`` on whitespace tokens + ``NaiveBayes`` (multinomial), then
  ``transform`` of the test documents. Its model is dense: C * V * 8 bytes (theta), built by an
  aggregation that also holds C dense V-vectors per task.
* this pipeline: train (class prior, term counts with ``max_entries_per_shard``, publish) and
  predict (vectorise, one pass per shard, combine) with the library functions.
Both predict the first ``test_docs`` training documents. Peak memory: the JVM's resident high-water
mark (VmHWM; local mode: driver = executor) and the largest Python process of the cell.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import log

MULTIPLIER = 2654435761  # odd: a bijection modulo any power of two
DEFAULT_MAX_ENTRIES_PER_SHARD = 2_000_000

GRIDS = {
    # (side, classes, log2 vocabulary)
    "small": [
        ("mllib", 200, 16), ("mllib", 200, 18), ("mllib", 1000, 18), ("mllib", 200, 20),
        ("ours", 1000, 20), ("ours", 5000, 22),
    ],
    # The original design's example size (10 000 classes x 2^20 hashed terms) and twice it.
    "design": [("ours", 10000, 20), ("ours", 5000, 22)],
}


def corpus_shape(classes: int, log2_vocab: int) -> tuple[int, int]:
    """(documents, tokens per document) covering every term at least once."""
    vocab = 1 << log2_vocab
    docs_per_class = 4
    docs = classes * docs_per_class
    length = max(64, -(-vocab // docs))
    return docs, length


def write_corpus(spark, classes: int, log2_vocab: int, path: Path) -> dict:
    from pyspark.sql import functions as F

    vocab = 1 << log2_vocab
    docs, length = corpus_shape(classes, log2_vocab)
    term = lambda j: F.concat(F.lit("w"), F.pmod((F.col("n") * length + j) * MULTIPLIER, F.lit(vocab)).cast("string"))
    frame = spark.range(docs, numPartitions=4).withColumnRenamed("id", "n").select(
        F.concat(F.lit("d"), F.col("n").cast("string")).alias("id"),
        F.concat(F.lit("c"), F.lpad((F.col("n") % classes).cast("string"), 5, "0")).alias("label"),
        F.array_join(F.transform(F.sequence(F.lit(0), F.lit(length - 1)), term), " ").alias("text"),
    )
    frame.write.mode("overwrite").parquet(str(path))
    return {"documents": docs, "tokens_per_document": length, "tokens": docs * length}


def peak_memory(spark) -> dict:
    import psutil

    jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    status = Path(f"/proc/{jvm_pid}/status").read_text()
    hwm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    workers = [p for p in psutil.Process(jvm_pid).children(recursive=True)]
    worker_peak = 0
    for p in workers:
        try:
            worker_hwm = next(int(line.split()[1]) for line in Path(f"/proc/{p.pid}/status").read_text().splitlines()
                              if line.startswith("VmHWM"))
            worker_peak = max(worker_peak, worker_hwm)
        except (OSError, StopIteration):
            pass
    return {
        "jvm_peak_rss_mb": round(hwm_kb / 1024),
        "python_worker_peak_rss_mb": round(worker_peak / 1024),
        "python_driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def run_cell(side: str, classes: int, log2_vocab: int, test_docs: int, max_entries: int) -> dict:
    """One cell, in this process (the orchestrator runs it in a subprocess)."""

    spark, startup = common.start_spark(f"bench-scale-{side}")
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-scale-"))
    cell = {"side": side, "classes": classes, "vocabulary": 1 << log2_vocab, "log2_vocabulary": log2_vocab,
            "spark_startup_s": round(startup, 3)}
    try:
        corpus = workdir / "corpus"
        cell["corpus"] = write_corpus(spark, classes, log2_vocab, corpus)
        test = workdir / "test"
        spark.read.parquet(str(corpus)).orderBy("id").limit(test_docs).write.parquet(str(test))
        started = time.perf_counter()
        if side == "mllib":
            from pyspark.ml.classification import NaiveBayes
            from pyspark.ml.feature import HashingTF, StringIndexer, Tokenizer

            def features(frame):
                tokens = Tokenizer(inputCol="text", outputCol="tokens").transform(frame)
                return HashingTF(inputCol="tokens", outputCol="features", numFeatures=1 << log2_vocab).transform(tokens)

            indexer = StringIndexer(inputCol="label", outputCol="y", stringOrderType="alphabetAsc").fit(
                spark.read.parquet(str(corpus)))
            model = NaiveBayes(featuresCol="features", labelCol="y", modelType="multinomial").fit(
                indexer.transform(features(spark.read.parquet(str(corpus)))))
            cell["train_s"] = round(time.perf_counter() - started, 3)
            started = time.perf_counter()
            model.transform(features(spark.read.parquet(str(test)))).select("id", "prediction").write.format(
                "noop").mode("overwrite").save()
            cell["predict_s"] = round(time.perf_counter() - started, 3)
            cell["model_bytes"] = 8 * model.numClasses * model.numFeatures
        else:
            from nbknn.contract import scores_shard_uri
            from nbknn.inputs.documents import InputSpec
            from nbknn.inputs.tokenizer import TokenizerConfig
            from nbknn.naive_bayes.class_prior import run_class_prior
            from nbknn.naive_bayes.combine import run_combine
            from nbknn.naive_bayes.publish import publish_model
            from nbknn.naive_bayes.shard_pass import run_predict_shard
            from nbknn.naive_bayes.term_counts import run_term_counts
            from nbknn.naive_bayes.vectorize import run_vectorize

            root = workdir.as_uri()
            staging, model_dir = f"{root}/models/_staging/v1", f"{root}/models/v1"
            spec = InputSpec(uri=corpus.as_uri(), format="parquet")
            run_class_prior(spark, spec, staging, f"{root}/rejects", 0.0)
            terms = run_term_counts(spark, spec, staging, TokenizerConfig(), max_entries_per_shard=max_entries)
            manifest = publish_model(spark, staging, model_dir, f"{root}/models/LATEST", "v1", "multinomial",
                                     1.0, True, {})
            cell["train_s"] = round(time.perf_counter() - started, 3)
            cell["num_shards"] = manifest["num_shards"]
            cell["entries"] = terms["entries"]
            cell["model_vocabulary_size"] = terms["vocabulary_size"]
            started = time.perf_counter()
            run = f"{root}/run"
            run_vectorize(spark, InputSpec(uri=test.as_uri(), format="parquet"), model_dir, f"{run}/vectors",
                          f"{run}/rejects", 0.0)
            shard_memory = []
            for shard in range(manifest["num_shards"]):
                summary = run_predict_shard(spark, model_dir, f"{run}/vectors", shard,
                                            scores_shard_uri(f"{run}/scores", shard))
                shard_memory.append(summary["memory"]["bytes_total"])
            combined = run_combine(spark, model_dir, f"{run}/vectors", f"{run}/scores", f"{run}/predictions",
                                   f"{run}/report")
            cell["predict_s"] = round(time.perf_counter() - started, 3)
            cell["model_bytes"] = sum(shard_memory)
            cell["largest_shard_bytes"] = max(shard_memory)
            cell["max_entries_per_shard"] = max_entries
            cell["train_accuracy_on_test_docs"] = combined["metrics"]["accuracy"]
        cell["status"] = "ok"
        cell.update(peak_memory(spark))
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return cell


def run_grid(grid: str, timeout: int, test_docs: int, max_entries: int) -> list[dict]:
    cells = []
    for side, classes, log2_vocab in GRIDS[grid]:
        log(f"cell {side} C={classes} V=2^{log2_vocab} (timeout {timeout} s)")
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            out = Path(handle.name)
        command = [sys.executable, __file__, "--cell", side, str(classes), str(log2_vocab),
                   "--test-docs", str(test_docs), "--max-entries-per-shard", str(max_entries), "--out", str(out)]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        try:
            output, _ = process.communicate(timeout=timeout)
            status = None
        except subprocess.TimeoutExpired:
            # The cell's own process group (its JVM and Python workers): nothing else is touched.
            os.killpg(process.pid, 9)
            output, _ = process.communicate()
            status = "timeout"
        wall = round(time.perf_counter() - started, 1)
        cell = {"side": side, "classes": classes, "vocabulary": 1 << log2_vocab, "log2_vocabulary": log2_vocab}
        if status is None and process.returncode == 0 and out.stat().st_size:
            cell = json.loads(out.read_text())
        else:
            cell["status"] = status or "error"
            cell["error"] = f"killed after {timeout} s" if status == "timeout" else _error_line(output)
        out.unlink(missing_ok=True)
        cell["cell_wall_s"] = wall
        cell["product"] = classes * (1 << log2_vocab)
        log(f"  -> {cell['status']} {cell.get('train_s', '')} {cell.get('error', '')}")
        cells.append(cell)
    return cells


def _error_line(output: str) -> str:
    """The most telling line of a failed cell's output."""
    lines = [line for line in output.splitlines() if line.strip()]
    for needle in ("OutOfMemoryError", "Java heap space", "Requested array size", "exceeds", "Error", "Exception"):
        for line in lines:
            if needle in line:
                return line.strip()[:300]
    return (lines[-1] if lines else "no output")[:300]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", nargs=3, metavar=("SIDE", "CLASSES", "LOG2_VOCAB"))
    parser.add_argument("--out")
    parser.add_argument("--grid", default="small", choices=sorted(GRIDS))
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--test-docs", type=int, default=2000)
    parser.add_argument("--max-entries-per-shard", type=int, default=DEFAULT_MAX_ENTRIES_PER_SHARD)
    parser.add_argument("--name", default="nb_scale")
    args = parser.parse_args(argv)
    if args.cell:
        side, classes, log2_vocab = args.cell[0], int(args.cell[1]), int(args.cell[2])
        cell = run_cell(side, classes, log2_vocab, args.test_docs, args.max_entries_per_shard)
        Path(args.out).write_text(json.dumps(cell))
        return
    results = {"benchmark": "naive_bayes_scale", "machine": common.machine(), "timeout_s": args.timeout,
               "test_docs": args.test_docs, "max_entries_per_shard": args.max_entries_per_shard, "grid": args.grid}
    results["cells"] = run_grid(args.grid, args.timeout, args.test_docs, args.max_entries_per_shard)
    done = {side: [c["product"] for c in results["cells"] if c["side"] == side and c["status"] == "ok"]
            for side in ("mllib", "ours")}
    largest = {side: max(products) if products else 0 for side, products in done.items()}
    results["largest_completed_product"] = largest
    results["ratio_ours_over_mllib_largest_product"] = common.ratio(largest["ours"], largest["mllib"])
    common.write_results(args.name, results)


if __name__ == "__main__":
    main()
