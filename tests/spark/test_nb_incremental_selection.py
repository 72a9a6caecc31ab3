"""Incremental training with selection on the real Reuters R52 corpus: a model trained with
selection=kfold on part A keeps its per-fold counts; folding part B into it with selection adds
B's per-fold counts to A's and scores every document of A and B, so the per-fold scores and the
chosen point equal scikit-learn's GridSearchCV with a PredefinedSplit on A ∪ B (same folds from
nbknn.contract.fold_of, same tokens).

Part B holds every document of two labels that sort before labels of A: the merge renumbers the
classes, and the base's per-fold counts must follow their labels.
"""

import hashlib
import json
import shutil

import numpy as np
import pytest
from selection_oracles import ALPHAS, FIT_PRIORS, FOLDS, MODEL_TYPES, check_equals_grid_search, corpus_matrix, our_table

from helpers import local_path, project_vectorizer, stage_partition_in_process, write_jsonl
from nbknn import contract
from nbknn.common.errors import ConfigError
from nbknn.inputs.documents import InputError
from nbknn.naive_bayes import schemas
from nbknn.naive_bayes.select_job import run_selection

pytestmark = pytest.mark.spark

LIMIT = 2500
METRIC = "f1_macro"


def train(spark, docs, workdir, partition, version, base_dir=None, selection=True):
    """One nb_train run in process with the library functions its Spark tasks call, in the DAG's
    order: class_prior, term_counts (into a delta when there is a base), merge, select, publish.
    Returns (published model URI, the selection summary or None)."""
    from nbknn.naive_bayes.publish import publish_model

    spec, root, staging, version_dir = stage_partition_in_process(spark, docs, workdir, partition, version,
                                                                  base_dir, num_shards=2)
    summary = None
    if selection:
        summary = run_selection(
            spark, spec, staging, FOLDS, ALPHAS, MODEL_TYPES, FIT_PRIORS, METRIC, base_dir=base_dir
        )
    lineage = {"run_id": f"scheduled__{partition}", "mode": "incremental" if base_dir else "full"}
    publish_model(
        spark, staging, version_dir, f"{root}/models/LATEST", version, "multinomial", 1.0, True, lineage,
        selection=selection,
    )
    return version_dir, summary


def in_b(doc: dict, b_labels: set) -> bool:
    return doc["label"] in b_labels or int(hashlib.sha256(doc["id"].encode()).hexdigest(), 16) % 3 == 0


@pytest.fixture(scope="module")
def parts(corpus):
    docs = corpus("reuters-r52", "train", limit=LIMIT)
    labels = sorted({d["label"] for d in docs})
    # Two labels of a few documents each, not the first: they sort between labels of A.
    b_labels = {labels[1], labels[4]}
    a = [d for d in docs if not in_b(d, b_labels)]
    b = [d for d in docs if in_b(d, b_labels)]
    return a, b, b_labels


@pytest.fixture(scope="module")
def chain(spark, parts, tmp_path_factory):
    a, b, _ = parts
    workdir = tmp_path_factory.mktemp("incremental-selection")
    base_dir, base_summary = train(spark, a, workdir, "date=2026-03-01", "v-a")
    merged_dir, summary = train(spark, b, workdir, "date=2026-03-02", "v-ab", base_dir=base_dir)
    return workdir, base_dir, base_summary, merged_dir, summary


def manifest_of(model_dir: str) -> dict:
    return json.loads(local_path(contract.manifest_uri(model_dir)).read_text())


def test_the_split_brings_labels_that_renumber_the_classes(parts):
    """Otherwise the test below would not cover the class remapping of the base's fold counts."""
    a, b, b_labels = parts
    a_labels = {d["label"] for d in a}
    assert not b_labels & a_labels and min(b_labels) > min(a_labels) and min(b_labels) < max(a_labels)
    assert len(a) > 1000 and len(b) > 500


def test_scores_and_choice_equal_grid_search_on_the_union(chain, parts):
    a, b, _ = parts
    *_, summary = chain
    folds, X, y = corpus_matrix(a + b)
    check_equals_grid_search(summary, folds, X, y)
    assert summary["fold_documents"] == np.bincount(folds, minlength=FOLDS).tolist()
    # The log-loss too, against the numpy selection fed with scikit-learn's count matrix.
    expected = our_table(folds, X, y, METRIC)
    for row, want in zip(summary["points"], expected["points"], strict=True):
        np.testing.assert_allclose(row["fold_log_loss"], want["fold_log_loss"], rtol=0, atol=1e-12)


def test_published_fold_counts_are_those_of_the_union(spark, chain, parts):
    """The merged model keeps its per-fold counts: A's and B's added, by label and term."""

    a, b, _ = parts
    _, base_dir, _, merged_dir, summary = chain
    manifest = manifest_of(merged_dir)
    record = manifest["fold_counts"]
    assert record["folds"] == FOLDS and record["fold_hash"] == contract.FOLD_HASH
    assert record["base_version"] == "v-a" and manifest_of(base_dir)["fold_counts"]["base_version"] is None
    assert record["fold_documents"] == summary["fold_documents"] == manifest["selection"]["fold_documents"]
    assert manifest["model"] == contract.selected_model(summary)

    docs = a + b
    vectorizer = project_vectorizer()
    X = vectorizer.fit_transform([d["text"] for d in docs]).tocoo()
    names = vectorizer.get_feature_names_out()
    fold = [contract.fold_of(d["id"], FOLDS) for d in docs]
    want_terms: dict = {}
    for row, col, value in zip(X.row, X.col, X.data):
        key = (fold[row], docs[row]["label"], str(names[col]))
        want_terms[key] = want_terms.get(key, 0) + int(value)
    want_docs: dict = {}
    for f, d in zip(fold, docs):
        want_docs[(f, d["label"])] = want_docs.get((f, d["label"]), 0) + 1

    label = {r["class_id"]: r["label"] for r in spark.read.schema(schemas.CLASSES).parquet(contract.classes_uri(merged_dir)).collect()}
    term = {r["term_id"]: r["term"] for r in spark.read.schema(schemas.VOCABULARY).parquet(contract.vocabulary_uri(merged_dir)).collect()}
    got_terms = {
        (r["fold"], label[r["class_id"]], term[r["term_id"]]): r["count"]
        for r in spark.read.schema(schemas.FOLD_TERMS).parquet(contract.fold_terms_uri(merged_dir)).collect()
    }
    got_docs = {
        (r["fold"], label[r["class_id"]]): r["doc_count"]
        for r in spark.read.schema(schemas.FOLD_DOCUMENTS).parquet(contract.fold_documents_uri(merged_dir)).collect()
    }
    assert got_docs == want_docs
    assert got_terms == want_terms
    assert record["entries"] == len(want_terms)


def test_a_base_without_fold_counts_or_with_changed_documents_is_refused(spark, corpus, tmp_path):
    docs = corpus("reuters-r8", "train", limit=300)
    first, second, third = docs[:150], docs[150:220], docs[220:]
    # A base trained without selection keeps no fold counts.
    plain, _ = train(spark, first, tmp_path / "plain", "date=2026-03-01", "v1", selection=False)
    with pytest.raises(ConfigError, match="keeps no per-fold counts"):
        train(spark, second, tmp_path / "plain", "date=2026-03-02", "v2", base_dir=plain)
    # A base whose documents changed since they were counted cannot be scored again exactly.
    workdir = tmp_path / "changed"
    base, _ = train(spark, first, workdir, "date=2026-03-01", "v1")
    write_jsonl(workdir / "input" / "labelled" / "date=2026-03-01" / "part-0.jsonl", first[:-5])
    with pytest.raises(InputError, match="no longer add up to its per-fold counts"):
        train(spark, third, workdir, "date=2026-03-02", "v2", base_dir=base)
    shutil.rmtree(local_path(f"{workdir.as_uri()}/models/_staging/v2"), ignore_errors=True)
