"""Naive Bayes on 20 Newsgroups: this pipeline vs Spark MLlib vs scikit-learn, side by side.

    python bench/bench_nb.py [--scales 1,3] [--reps 3] [--large-reps 1] [--shards 1] [--only train]
    make bench-nb        # x1 and x3 with 3 repetitions, x20 with 2

``--only train`` times training alone (this pipeline, MLlib with its own Tokenizer, MLlib with
the same tokens), the sides taking turns first from one repetition to the next.

One SparkSession (local[2]) serves both Spark sides; its start-up is timed once and excluded from
every per-job timing. Per scale and repetition, in this order:

* this pipeline, with the library functions the Spark applications call, in process:
  training = run_class_prior + run_term_counts + publish_model (counts only: the model type is
  applied when a shard is loaded, so one training serves multinomial and complement);
  prediction = the path nb_predict's plan chooses (``contract.choose_prediction_path``): the single
  pass (run_predict_single_pass) when the model fits one broadcast, else run_vectorize +
  run_predict_shard (every shard) + run_combine; both include the report;
* Spark MLlib, ``StringIndexer`` + ``CountVectorizer`` + ``NaiveBayes`` (multinomial, complement),
  fed the *same tokens* as this pipeline (``nbknn.inputs.tokenizer.tokens_column``), and once more with
  MLlib's own whitespace ``Tokenizer`` (multinomial, every repetition: the recipe its users
  would write, and the baseline of the closing ratio lines);
  prediction = transform + write of (id, prediction) to Parquet, with the fitted model in memory;
  the Tokenizer variant also as a daily prediction job runs it, loading the pipeline its training
  saved (``PipelineModel.load``, as this pipeline's prediction reads its published model);
* scikit-learn, single process: ``CountVectorizer(tokenizer=nbknn.inputs.tokenizer.tokenize)`` +
  ``MultinomialNB`` / ``ComplementNB(norm=False)``, alpha = 1.

Both Spark sides read the same JSON Lines files. Accuracy is against the true labels; agreement is
the share of test documents whose predicted label equals scikit-learn's (the reference of the
design's equivalence contract). The larger corpus resamples 20 Newsgroups (train and test, with
replacement, fixed seed) ``scale`` times: more documents, no new terms. Defaults are
scaled down for a shared 2-core machine (x3 instead of the full x20, one repetition there).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import common
import numpy as np
from common import Timer, log, ratio

ALPHA = 1.0
FIT_PRIOR = True
MODEL_TYPES = ("multinomial", "complement")


# --- data ------------------------------------------------------------------------------------


def resampled(docs: list[dict], scale: int, seed: int) -> list[dict]:
    """``scale`` x len(docs) documents drawn with replacement (scale 1: the corpus itself)."""
    if scale == 1:
        return docs
    rng = random.Random(seed)
    picks = [rng.randrange(len(docs)) for _ in range(scale * len(docs))]
    return [{**docs[i], "id": f"{docs[i]['id']}-r{n:07d}"} for n, i in enumerate(picks)]


def write_jsonl(docs: list[dict], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for doc in docs:
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return path.as_uri()


# --- this pipeline ---------------------------------------------------------------------------


def ours_train(spark, train_uri: str, workdir: Path, num_shards: int, timer: Timer, package: str = "nbknn",
               tag: str = "ours") -> str:
    """Training with the library of ``package``: ``nbknn``, or ``nbknn_baseline`` (--baseline)."""
    import importlib

    def module(name: str):
        return importlib.import_module(f"{package}.{name}")

    InputSpec = module("inputs.documents").InputSpec
    TokenizerConfig = module("inputs.tokenizer").TokenizerConfig
    run_class_prior = module("naive_bayes.class_prior").run_class_prior
    publish_model = module("naive_bayes.publish").publish_model
    run_term_counts = module("naive_bayes.term_counts").run_term_counts

    root = workdir.as_uri()
    staging, version_dir = f"{root}/models/_staging/v1", f"{root}/models/v1"
    spec = InputSpec(uri=train_uri)
    with timer.time(f"{tag}.train.class_prior"):
        run_class_prior(spark, spec, staging, f"{root}/rejects", max_reject_fraction=0.0)
    with timer.time(f"{tag}.train.term_counts"):
        run_term_counts(spark, spec, staging, TokenizerConfig(), num_shards=num_shards)
    with timer.time(f"{tag}.train.publish"):
        publish_model(spark, staging, version_dir, f"{root}/models/LATEST", "v1", "multinomial", ALPHA, FIT_PRIOR, {})
    timer.add(f"{tag}.train", sum(timer.samples[f"{tag}.train.{s}"][-1] for s in ("class_prior", "term_counts", "publish")))
    return version_dir


BASELINE_PACKAGE = "nbknn_baseline"


def baseline_package(revision: str, workdir: Path) -> Path:
    """The library ``spark_apps/nbknn`` of a git revision, as the package ``nbknn_baseline`` in a
    folder of its own (returned): its imports of ``nbknn`` renamed, so that both versions load in
    one process and the same Spark session (the folder goes on the executors' PYTHONPATH too)."""
    import re

    folder = workdir / "baseline"
    package = folder / BASELINE_PACKAGE
    common.extract_revision(revision, "spark_apps/nbknn", folder).rename(package)
    # Not the Java package of the tokeniser's scanner (nbknn.jvm): both versions share its jar.
    own_name = re.compile(r"(?<![\w.])nbknn(?!\w|\.jvm\b)")
    for source in package.rglob("*.py"):
        source.write_text(own_name.sub(BASELINE_PACKAGE, source.read_text()))
    return folder


def model_variant(model_dir: str, target: Path, model_type: str) -> str:
    """A copy of a trained model with another model type in its manifest (training is shared)."""
    source = Path(model_dir.removeprefix("file://"))
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["model"] = {"type": model_type, "alpha": ALPHA, "fit_prior": FIT_PRIOR}
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target.as_uri()


def ours_predict(spark, model_dir: str, test_uri: str, workdir: Path, timer: Timer, tag: str) -> dict:
    """The prediction path nb_predict's plan would choose; returns {doc_id: label} and the run summary."""
    from nbknn.contract import DEFAULT_SINGLE_PASS_MAX_BYTES, SINGLE_PASS, choose_prediction_path, scores_shard_uri
    from nbknn.inputs.documents import InputSpec
    from nbknn.naive_bayes.combine import run_combine
    from nbknn.naive_bayes.shard_pass import run_predict_shard
    from nbknn.naive_bayes.single_pass import run_predict_single_pass
    from nbknn.naive_bayes.vectorize import run_vectorize

    run = workdir.as_uri()
    manifest = json.loads((Path(model_dir.removeprefix("file://")) / "manifest.json").read_text())
    path, reason = choose_prediction_path(manifest, "auto", DEFAULT_SINGLE_PASS_MAX_BYTES)
    if path == SINGLE_PASS:
        with timer.time(tag):
            summary = run_predict_single_pass(spark, InputSpec(uri=test_uri), model_dir, f"{run}/predictions",
                                              f"{run}/report", f"{run}/rejects", 0.0, path_reason=reason)
        rows = spark.read.parquet(f"{run}/predictions").select("doc_id", "label").collect()
        return {"labels": {r["doc_id"]: r["label"] for r in rows}, "summary": summary}
    with timer.time(f"{tag}.vectorize"):
        run_vectorize(spark, InputSpec(uri=test_uri), model_dir, f"{run}/vectors", f"{run}/rejects", 0.0)
    with timer.time(f"{tag}.shards"):
        for shard in range(manifest["num_shards"]):
            run_predict_shard(spark, model_dir, f"{run}/vectors", shard, scores_shard_uri(f"{run}/scores", shard))
    with timer.time(f"{tag}.combine"):
        summary = run_combine(spark, model_dir, f"{run}/vectors", f"{run}/scores", f"{run}/predictions", f"{run}/report")
    timer.add(tag, sum(timer.samples[f"{tag}.{s}"][-1] for s in ("vectorize", "shards", "combine")))
    rows = spark.read.parquet(f"{run}/predictions").select("doc_id", "label").collect()
    return {"labels": {r["doc_id"]: r["label"] for r in rows}, "summary": summary}


def ours_memory(spark, model_dir: str) -> dict:
    """Bytes of the prediction pass's broadcast models (every shard), as run_predict_shard builds them."""
    from nbknn.naive_bayes import scoring
    from nbknn.naive_bayes.model_reader import load_model_shard, read_model_manifest
    from nbknn.naive_bayes.shard_pass import model_memory

    manifest = read_model_manifest(spark, model_dir)
    shards, entries, entry_bytes, total = [], 0, 0, 0
    for shard in range(manifest["num_shards"]):
        model = load_model_shard(spark, model_dir, manifest, shard)
        memory = model_memory(model)
        shards.append(memory)
        entries += memory["entries"]
        entry_bytes += memory["bytes_entries"]
        total += memory["bytes_total"]
        assert scoring.entry_count(model) == memory["entries"]
    return {
        "model_type": manifest["model"]["type"],
        "classes": manifest["counts"]["classes"],
        "vocabulary_size": manifest["counts"]["vocabulary_size"],
        "entries": entries,
        "density": round(entries / (manifest["counts"]["classes"] * manifest["counts"]["vocabulary_size"]), 5),
        "bytes_entries": entry_bytes,
        "bytes_total": total,
        "bytes_per_entry": round(entry_bytes / entries, 3),
        "bytes_total_per_entry": round(total / entries, 3),
        "shards": shards,
    }


# --- Spark MLlib -----------------------------------------------------------------------------


def mllib_frame(spark, uri: str, same_tokens: bool):
    from pyspark.sql import functions as F

    from nbknn.inputs.tokenizer import TokenizerConfig, tokens_column

    frame = spark.read.schema("id string, label string, text string").json(uri)
    if same_tokens:
        return frame.select("id", "label", tokens_column(F.col("text"), TokenizerConfig()).alias("tokens"))
    return frame


def mllib_pipeline(model_type: str, same_tokens: bool):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import NaiveBayes
    from pyspark.ml.feature import CountVectorizer, StringIndexer, Tokenizer

    stages = [] if same_tokens else [Tokenizer(inputCol="text", outputCol="tokens")]
    stages += [
        # Alphabetical label order = this pipeline's and scikit-learn's class ids.
        StringIndexer(inputCol="label", outputCol="y", stringOrderType="alphabetAsc"),
        # A vocabulary cap above any corpus here: every term is kept, as in the other two.
        CountVectorizer(inputCol="tokens", outputCol="features", vocabSize=1 << 24, minDF=1.0),
        NaiveBayes(featuresCol="features", labelCol="y", modelType=model_type, smoothing=ALPHA),
    ]
    return Pipeline(stages=stages)


def mllib_run(spark, train_uri: str, test_uri: str, out_dir: Path, model_type: str, same_tokens: bool,
              timer: Timer, tag: str, saved: bool = False) -> dict:
    """Train and predict with the model in memory; with ``saved``, also as separate jobs would:
    training saves the fitted pipeline (``{tag}.save``), prediction loads it (``{tag}.predict_loaded``,
    of which ``{tag}.load``), and the two predictions must agree."""
    with timer.time(f"{tag}.train"):
        model = mllib_pipeline(model_type, same_tokens).fit(mllib_frame(spark, train_uri, same_tokens))
    out = (out_dir / tag.replace(".", "-")).as_uri()
    with timer.time(f"{tag}.predict"):
        mllib_predict(spark, model, test_uri, same_tokens, out)
    labels = model.stages[-3].labelsArray[0]
    rows = spark.read.parquet(out).collect()
    if saved:
        mllib_saved_run(spark, model, test_uri, out_dir, same_tokens, timer, tag, rows)
    nb = model.stages[-1]
    return {
        "labels": {r["id"]: labels[int(r["prediction"])] for r in rows},
        "classes": nb.numClasses,
        "features": nb.numFeatures,
        # The model MLlib holds and ships to every task: theta (C x V) and pi (C), float64.
        "dense_model_bytes": 8 * nb.numClasses * nb.numFeatures + 8 * nb.numClasses,
    }


def mllib_predict(spark, model, test_uri: str, same_tokens: bool, out: str) -> None:
    model.transform(mllib_frame(spark, test_uri, same_tokens)).select("id", "prediction").write.mode(
        "overwrite"
    ).parquet(out)


def mllib_saved_run(spark, model, test_uri: str, out_dir: Path, same_tokens: bool, timer: Timer, tag: str,
                    in_memory_rows) -> None:
    """MLlib as a daily prediction job runs it: its own spark-submit, so the fitted pipeline is
    saved by training and loaded by prediction (this pipeline's prediction reads its published
    model too)."""
    from pyspark.ml import PipelineModel

    name = tag.replace(".", "-")
    model_uri = (out_dir / f"{name}-model").as_uri()
    out = (out_dir / f"{name}-loaded").as_uri()
    with timer.time(f"{tag}.save"):
        model.write().overwrite().save(model_uri)
    with timer.time(f"{tag}.predict_loaded"):
        with timer.time(f"{tag}.load"):
            loaded = PipelineModel.load(model_uri)
        mllib_predict(spark, loaded, test_uri, same_tokens, out)
    if sorted(spark.read.parquet(out).collect()) != sorted(in_memory_rows):
        raise AssertionError(f"{tag}: the saved and loaded pipeline predicts otherwise than the fitted one")


# --- scikit-learn ----------------------------------------------------------------------------


def sklearn_run(train: list[dict], test: list[dict], timer: Timer, tag: str) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import ComplementNB, MultinomialNB

    from nbknn.inputs.tokenizer import tokenize

    with timer.time(f"{tag}.vectorize_train"):
        vectorizer = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)
        X = vectorizer.fit_transform([d["text"] for d in train])
    y = [d["label"] for d in train]
    with timer.time(f"{tag}.vectorize_test"):
        X_test = vectorizer.transform([d["text"] for d in test])
    out = {}
    for model_type, model in (("multinomial", MultinomialNB(alpha=ALPHA, fit_prior=FIT_PRIOR)),
                              ("complement", ComplementNB(alpha=ALPHA, norm=False, fit_prior=FIT_PRIOR))):
        with timer.time(f"{tag}.{model_type}.fit"):
            model.fit(X, y)
        with timer.time(f"{tag}.{model_type}.predict_only"):
            predicted = model.predict(X_test)
        # Whole jobs, comparable with the Spark sides: vectorising is part of training and of prediction.
        timer.add(f"{tag}.{model_type}.train", timer.samples[f"{tag}.vectorize_train"][-1]
                  + timer.samples[f"{tag}.{model_type}.fit"][-1])
        timer.add(f"{tag}.{model_type}.predict", timer.samples[f"{tag}.vectorize_test"][-1]
                  + timer.samples[f"{tag}.{model_type}.predict_only"][-1])
        out[model_type] = {d["id"]: label for d, label in zip(test, predicted)}
    out["vocabulary_size"] = len(vectorizer.vocabulary_)
    return out


# --- comparison ------------------------------------------------------------------------------


def accuracy(labels: dict, test: list[dict]) -> float:
    return round(float(np.mean([labels.get(d["id"]) == d["label"] for d in test])), 6)


def agreement(labels: dict, reference: dict) -> float:
    return round(float(np.mean([labels.get(doc_id) == label for doc_id, label in reference.items()])), 6)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and every process under it so far: the Spark JVM
    and its Python workers, with the workers that ended (counted in their parent's child times)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


@contextmanager
def cpu_time(timer: Timer, name: str):
    """Record the CPU seconds the block used, as ``cpu.<name>``: less sensitive than wall time to
    other work on a shared machine (time waiting for a core is not counted)."""
    started = cpu_seconds()
    try:
        yield
    finally:
        timer.add(f"cpu.{name}", cpu_seconds() - started)


def ratio_spread(timer: Timer, ours: str, theirs: str) -> dict:
    """Per-repetition ratios ours/theirs (repetition i against repetition i of the same run):
    median, min and max, the spread that a ratio of medians hides on a shared machine."""
    ratios = [a / b for a, b in zip(timer.samples[ours], timer.samples[theirs]) if b]
    return {"median": ratio(float(np.median(ratios)), 1.0), "min": ratio(min(ratios), 1.0),
            "max": ratio(max(ratios), 1.0), "samples": [ratio(r, 1.0) for r in ratios]}


def bench_train_scale(spark, base_train, scale: int, reps: int, num_shards: int, workdir: Path,
                      baseline: str | None = None) -> dict:
    """Training alone: this pipeline, MLlib with its own Tokenizer and MLlib with the same tokens
    (with ``baseline``: this pipeline at that revision instead of MLlib with the same tokens),
    interleaved; the side that goes first alternates between repetitions."""
    train = resampled(base_train, scale, seed=1)
    train_uri = write_jsonl(train, workdir / "input" / "train.jsonl")
    log(f"scale {scale}: {len(train)} training documents (training only)")
    timer = Timer()
    for rep in range(reps):
        rep_dir = workdir / f"rep{rep}"

        def ours(rep_dir=rep_dir):
            with cpu_time(timer, "ours.train"):
                ours_train(spark, train_uri, rep_dir / "ours", num_shards, timer)

        def mllib_tokenizer():
            with cpu_time(timer, "mllib_tokenizer.multinomial.train"), timer.time("mllib_tokenizer.multinomial.train"):
                mllib_pipeline("multinomial", False).fit(mllib_frame(spark, train_uri, False))

        def mllib_same_tokens():
            with cpu_time(timer, "mllib.multinomial.train"), timer.time("mllib.multinomial.train"):
                mllib_pipeline("multinomial", True).fit(mllib_frame(spark, train_uri, True))

        def baseline_code(rep_dir=rep_dir):
            with cpu_time(timer, "baseline.train"):
                ours_train(spark, train_uri, rep_dir / "baseline", num_shards, timer, BASELINE_PACKAGE, "baseline")

        sides = [ours, mllib_tokenizer, baseline_code if baseline else mllib_same_tokens]
        for side in sides if rep % 2 == 0 else sides[::-1]:
            log(f"scale {scale} rep {rep}: {side.__name__}")
            side()
        shutil.rmtree(rep_dir, ignore_errors=True)
    med = timer.median
    if baseline:
        return {
            "scale": scale,
            "train_documents": len(train),
            "repetitions": reps,
            "num_shards": num_shards,
            "baseline_revision": baseline,
            "timings": timer.summary(),
            "train_s": {"ours": round(med("ours.train"), 3), "baseline": round(med("baseline.train"), 3),
                        "mllib_tokenizer": round(med("mllib_tokenizer.multinomial.train"), 3)},
            "ratio_train_per_rep_over_mllib_tokenizer": ratio_spread(
                timer, "ours.train", "mllib_tokenizer.multinomial.train"),
            "baseline_ratio_train_per_rep_over_mllib_tokenizer": ratio_spread(
                timer, "baseline.train", "mllib_tokenizer.multinomial.train"),
            "ratio_train_per_rep_over_baseline": ratio_spread(timer, "ours.train", "baseline.train"),
            "ratio_term_counts_per_rep_over_baseline": ratio_spread(
                timer, "ours.train.term_counts", "baseline.train.term_counts"),
            "cpu_ratio_train_per_rep_over_mllib_tokenizer": ratio_spread(
                timer, "cpu.ours.train", "cpu.mllib_tokenizer.multinomial.train"),
            "cpu_ratio_train_per_rep_over_baseline": ratio_spread(timer, "cpu.ours.train", "cpu.baseline.train"),
            "ratio_train_ours_over_mllib_tokenizer": ratio(med("ours.train"), med("mllib_tokenizer.multinomial.train")),
        }
    return {
        "scale": scale,
        "train_documents": len(train),
        "repetitions": reps,
        "num_shards": num_shards,
        "timings": timer.summary(),
        "train_s": {"ours": round(med("ours.train"), 3),
                    "mllib_tokenizer": round(med("mllib_tokenizer.multinomial.train"), 3),
                    "mllib_same_tokens": round(med("mllib.multinomial.train"), 3)},
        "ratio_train_ours_over_mllib_tokenizer": ratio(med("ours.train"), med("mllib_tokenizer.multinomial.train")),
        "ratio_train_ours_over_mllib": ratio(med("ours.train"), med("mllib.multinomial.train")),
        "ratio_train_per_rep_over_mllib_tokenizer": ratio_spread(timer, "ours.train", "mllib_tokenizer.multinomial.train"),
        "ratio_train_per_rep_over_mllib": ratio_spread(timer, "ours.train", "mllib.multinomial.train"),
        "cpu_s": {"ours": round(med("cpu.ours.train"), 3),
                  "mllib_tokenizer": round(med("cpu.mllib_tokenizer.multinomial.train"), 3),
                  "mllib_same_tokens": round(med("cpu.mllib.multinomial.train"), 3)},
        "cpu_ratio_train_per_rep_over_mllib_tokenizer": ratio_spread(
            timer, "cpu.ours.train", "cpu.mllib_tokenizer.multinomial.train"),
    }


def bench_scale(spark, base_train, base_test, scale: int, reps: int, num_shards: int, workdir: Path,
                with_tokenizer_variant: bool) -> dict:
    train, test = resampled(base_train, scale, seed=1), resampled(base_test, scale, seed=2)
    train_uri = write_jsonl(train, workdir / "input" / "train.jsonl")
    test_uri = write_jsonl(test, workdir / "input" / "test.jsonl")
    log(f"scale {scale}: {len(train)} training, {len(test)} test documents")
    timer = Timer()
    last: dict = {}
    for rep in range(reps):
        rep_dir = workdir / f"rep{rep}"
        log(f"scale {scale} rep {rep}: this pipeline")
        model_dir = ours_train(spark, train_uri, rep_dir / "ours", num_shards, timer)
        for model_type in MODEL_TYPES:
            variant = model_dir if model_type == "multinomial" else model_variant(
                model_dir, rep_dir / "ours" / "models" / model_type, model_type)
            last[f"ours.{model_type}"] = ours_predict(
                spark, variant, test_uri, rep_dir / "ours" / f"run-{model_type}", timer, f"ours.{model_type}.predict")
            last[f"ours.{model_type}.model_dir"] = variant
        log(f"scale {scale} rep {rep}: MLlib")
        for model_type in MODEL_TYPES:
            last[f"mllib.{model_type}"] = mllib_run(
                spark, train_uri, test_uri, rep_dir / "mllib", model_type, True, timer, f"mllib.{model_type}")
        if with_tokenizer_variant:
            last["mllib_tokenizer.multinomial"] = mllib_run(
                spark, train_uri, test_uri, rep_dir / "mllib", "multinomial", False, timer,
                "mllib_tokenizer.multinomial", saved=True)
        log(f"scale {scale} rep {rep}: scikit-learn")
        last["sklearn"] = sklearn_run(train, test, timer, "sklearn")
        if rep < reps - 1:
            shutil.rmtree(rep_dir, ignore_errors=True)

    med = timer.median
    result = {
        "scale": scale,
        "train_documents": len(train),
        "test_documents": len(test),
        "repetitions": reps,
        "num_shards": num_shards,
        "vocabulary_size": last["sklearn"]["vocabulary_size"],
        "timings": timer.summary(),
        "models": {},
    }
    for model_type in MODEL_TYPES:
        reference = last["sklearn"][model_type]
        ours, mllib = last[f"ours.{model_type}"], last[f"mllib.{model_type}"]
        row = {
            "train_s": {"ours": round(med("ours.train"), 3), "mllib": round(med(f"mllib.{model_type}.train"), 3),
                        "sklearn": round(med(f"sklearn.{model_type}.train"), 3)},
            "predict_s": {"ours": round(med(f"ours.{model_type}.predict"), 3),
                          "mllib": round(med(f"mllib.{model_type}.predict"), 3),
                          "sklearn": round(med(f"sklearn.{model_type}.predict"), 3)},
            "accuracy": {"ours": accuracy(ours["labels"], test), "mllib": accuracy(mllib["labels"], test),
                         "sklearn": accuracy(reference, test)},
            "agreement_with_sklearn": {"ours": agreement(ours["labels"], reference),
                                       "mllib": agreement(mllib["labels"], reference)},
            "ours_report_accuracy": ours["summary"]["metrics"]["accuracy"],
            "ours_prediction_path": ours["summary"]["path"],
            "mllib_features": mllib["features"],
            "mllib_dense_model_bytes": mllib["dense_model_bytes"],
        }
        row["ratio_train_ours_over_mllib"] = ratio(row["train_s"]["ours"], row["train_s"]["mllib"])
        row["ratio_predict_ours_over_mllib"] = ratio(row["predict_s"]["ours"], row["predict_s"]["mllib"])
        row["ratio_train_ours_over_sklearn"] = ratio(row["train_s"]["ours"], row["train_s"]["sklearn"])
        row["ratio_predict_ours_over_sklearn"] = ratio(row["predict_s"]["ours"], row["predict_s"]["sklearn"])
        result["models"][model_type] = row
    if with_tokenizer_variant:
        tok = last["mllib_tokenizer.multinomial"]
        result["mllib_whitespace_tokenizer_multinomial"] = {
            "train_s": round(med("mllib_tokenizer.multinomial.train"), 3),
            "predict_s": round(med("mllib_tokenizer.multinomial.predict"), 3),
            "accuracy": accuracy(tok["labels"], test),
            "agreement_with_sklearn": agreement(tok["labels"], last["sklearn"]["multinomial"]),
            "features": tok["features"],
        }
        result["ratio_predict_ours_over_mllib_tokenizer"] = ratio(
            med("ours.multinomial.predict"), med("mllib_tokenizer.multinomial.predict"))
        result["ratio_train_ours_over_mllib_tokenizer"] = ratio(
            med("ours.train"), med("mllib_tokenizer.multinomial.train"))
        result["ratio_predict_per_rep_over_mllib_tokenizer"] = ratio_spread(
            timer, "ours.multinomial.predict", "mllib_tokenizer.multinomial.predict")
        # MLlib as separate jobs run it: training saves its pipeline, prediction loads it.
        result["mllib_whitespace_tokenizer_multinomial"].update({
            "save_s": round(med("mllib_tokenizer.multinomial.save"), 3),
            "load_s": round(med("mllib_tokenizer.multinomial.load"), 3),
            "predict_loaded_s": round(med("mllib_tokenizer.multinomial.predict_loaded"), 3),
        })
        result["ratio_predict_per_rep_over_mllib_tokenizer_loaded"] = ratio_spread(
            timer, "ours.multinomial.predict", "mllib_tokenizer.multinomial.predict_loaded")
        result["ratio_train_per_rep_over_mllib_tokenizer"] = ratio_spread(
            timer, "ours.train", "mllib_tokenizer.multinomial.train")
    if scale == 1:
        result["memory"] = {}
        for model_type in MODEL_TYPES:
            memory = ours_memory(spark, last[f"ours.{model_type}.model_dir"])
            dense = last[f"mllib.{model_type}"]["dense_model_bytes"]
            memory["mllib_dense_bytes"] = dense
            memory["mllib_dense_bytes_per_ours_entry"] = round(dense / memory["entries"], 3)
            memory["ratio_mllib_dense_over_ours_total"] = ratio(dense, memory["bytes_total"])
            result["memory"][model_type] = memory
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,3", help="comma-separated resampling factors of 20 Newsgroups")
    parser.add_argument("--reps", type=int, default=3, help="repetitions at scale 1")
    parser.add_argument("--large-reps", type=int, default=1, help="repetitions at the larger scales")
    # One shard: the whole 20 Newsgroups model is ~2.6 MB, a per-shard budget would not split it
    # (bench_scale.py exercises several shards).
    parser.add_argument("--shards", type=int, default=1, help="shards of this pipeline's model")
    parser.add_argument("--name", default="nb")
    parser.add_argument("--only", choices=("all", "train"), default="all",
                        help="train: time training alone (no prediction, no scikit-learn)")
    parser.add_argument("--baseline", metavar="REVISION",
                        help="with --only train: also train with the library at this git revision, "
                             "interleaved (instead of MLlib with the same tokens), to measure a change")
    args = parser.parse_args(argv)
    if args.baseline and args.only != "train":
        parser.error("--baseline needs --only train")

    from nbknn_local import corpora

    benchmark = "naive_bayes_20newsgroups" if args.only == "all" else "naive_bayes_20newsgroups_train"
    results = {"benchmark": benchmark, "machine": common.machine(), "alpha": ALPHA, "fit_prior": FIT_PRIOR}
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-nb-"))
    extra_conf = {}
    if args.baseline:
        import sys

        baseline_dir = baseline_package(args.baseline, workdir)
        sys.path.insert(0, str(baseline_dir))
        extra_conf["spark.executorEnv.PYTHONPATH"] = f"{common.REPO_ROOT / 'spark_apps'}:{baseline_dir}"
        results["baseline_revision"] = args.baseline
    spark, startup = common.start_spark("bench-nb", extra_conf)
    results["spark_startup_s"] = round(startup, 3)
    log(f"Spark started in {startup:.1f} s")
    base_train, base_test = corpora.documents("20newsgroups", "train"), corpora.documents("20newsgroups", "test")
    try:
        # Warm-up (untimed): JIT, Python workers and imports of every side on a small slice.
        warm = Timer()
        log("warm-up")
        bench_dir = workdir / "warmup"
        small_train, small_test = base_train[:1500], base_test[:500]
        train_uri = write_jsonl(small_train, bench_dir / "train.jsonl")
        test_uri = write_jsonl(small_test, bench_dir / "test.jsonl")
        model_dir = ours_train(spark, train_uri, bench_dir / "ours", args.shards, warm)
        if args.only == "train":
            if args.baseline:
                ours_train(spark, train_uri, bench_dir / "baseline", args.shards, warm, BASELINE_PACKAGE, "baseline")
            mllib_pipeline("multinomial", False).fit(mllib_frame(spark, train_uri, False))
            mllib_pipeline("multinomial", True).fit(mllib_frame(spark, train_uri, True))
            results["scales"] = []
            for scale in (int(s) for s in args.scales.split(",")):
                reps = args.reps if scale == 1 else args.large_reps
                results["scales"].append(bench_train_scale(spark, base_train, scale, reps, args.shards,
                                                           workdir / f"scale{scale}", args.baseline))
                common.write_results(args.name, results)
            for scale in results["scales"]:
                spread = scale["ratio_train_per_rep_over_mllib_tokenizer"]
                cpu = scale["cpu_ratio_train_per_rep_over_mllib_tokenizer"]
                print(f"nb train x{scale['scale']}: ours/mllib={scale['ratio_train_ours_over_mllib_tokenizer']} "
                      f"(per repetition: median {spread['median']}, min {spread['min']}, max {spread['max']}; "
                      f"CPU time: median {cpu['median']}, min {cpu['min']}, max {cpu['max']})")
                if args.baseline:
                    old = scale["baseline_ratio_train_per_rep_over_mllib_tokenizer"]
                    change = scale["ratio_train_per_rep_over_baseline"]
                    print(f"nb train x{scale['scale']}: {args.baseline}/mllib per repetition: median {old['median']}, "
                          f"min {old['min']}, max {old['max']}; ours/{args.baseline}: median {change['median']}, "
                          f"min {change['min']}, max {change['max']}")
            return
        ours_predict(spark, model_dir, test_uri, bench_dir / "ours-run", warm, "w")
        mllib_run(spark, train_uri, test_uri, bench_dir, "multinomial", True, warm, "w-mllib")
        mllib_run(spark, train_uri, test_uri, bench_dir, "multinomial", False, warm, "w-mllib-tok", saved=True)
        sklearn_run(small_train, small_test, warm, "w-sk")
        results["scales"] = []
        for scale in (int(s) for s in args.scales.split(",")):
            reps = args.reps if scale == 1 else args.large_reps
            results["scales"].append(
                bench_scale(spark, base_train, base_test, scale, reps, args.shards, workdir / f"scale{scale}",
                            with_tokenizer_variant=True)
            )
            common.write_results(args.name, results)
        # MLlib's prediction as its own job (loading the pipeline its training saved), medians of
        # the per-repetition ratios with their spread.
        for scale in results["scales"]:
            spread = scale["ratio_predict_per_rep_over_mllib_tokenizer_loaded"]
            print(f"nb predict x{scale['scale']}: ours/mllib_loading_its_model={spread['median']} "
                  f"(min {spread['min']}, max {spread['max']})")
        # The closing lines: time ratios against MLlib with its own Tokenizer and its model in
        # memory (below 1: ours is faster).
        for scale in results["scales"]:
            print(f"nb train x{scale['scale']}: ours/mllib={scale['ratio_train_ours_over_mllib_tokenizer']}")
        for scale in results["scales"]:
            print(f"nb predict x{scale['scale']}: ours/mllib={scale['ratio_predict_ours_over_mllib_tokenizer']}")
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
