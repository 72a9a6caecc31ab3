"""Incremental training on the real Reuters R52 corpus: three dated partitions folded one by one
into the previous model give the counts of one full run over their union, and scikit-learn's
predictions on the test split."""

import hashlib
import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.naive_bayes import ComplementNB, MultinomialNB

from helpers import fold_partition_in_process, project_vectorizer, train_model_in_process
from nb_oracles import combine_shard_results
from nbknn import contract
from nbknn.inputs.tokenizer import tokenize
from nbknn.naive_bayes import schemas, scoring
from nbknn.naive_bayes.merge import AlreadyFoldedError, check_not_folded, folder_uri, merged_priors

pytestmark = pytest.mark.spark

DATES = ["2026-03-01", "2026-03-02", "2026-03-03"]


def partition_of(doc: dict) -> int:
    """A deterministic split that does not follow the corpus order."""
    return int(hashlib.sha256(doc["id"].encode()).hexdigest(), 16) % len(DATES)


def manifest_of(model_dir: str) -> dict:
    return json.loads(Path(urlparse(contract.manifest_uri(model_dir)).path).read_text())


def tables(spark, model_dir: str) -> dict:
    """The model's tables keyed by strings: ids may legitimately differ between two models."""
    classes = spark.read.schema(schemas.CLASSES).parquet(contract.classes_uri(model_dir)).collect()
    vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(contract.vocabulary_uri(model_dir)).collect()
    entries = spark.read.parquet(contract.term_counts_uri(model_dir)).collect()
    label = {r["class_id"]: r["label"] for r in classes}
    term = {r["term_id"]: r["term"] for r in vocabulary}
    return {
        "class_ids": {r["label"]: r["class_id"] for r in classes},
        "classes": {r["label"]: (r["doc_count"], r["term_total"], r["entries"]) for r in classes},
        "term_ids": {r["term"]: r["term_id"] for r in vocabulary},
        "vocabulary": {r["term"]: (r["total_count"], r["doc_freq"]) for r in vocabulary},
        "entries": {(label[r["class_id"]], term[r["term_id"]]): r["count"] for r in entries},
        "n_entries": len(entries),
        "shard_of": {r["label"]: r["shard"] for r in classes},
        "raw_entries": entries,
        "raw_classes": classes,
        "raw_vocabulary": vocabulary,
    }


@pytest.fixture(scope="module")
def r52(corpus):
    train = corpus("reuters-r52", "train")
    parts = [[d for d in train if partition_of(d) == i] for i in range(len(DATES))]
    return train, parts


@pytest.fixture(scope="module")
def chain(spark, r52, tmp_path_factory):
    """Fold the partitions one by one; returns the model directory after each fold."""
    _, parts = r52
    workdir = tmp_path_factory.mktemp("incremental")
    model_dirs, base = [], None
    for date, docs in zip(DATES, parts):
        base = fold_partition_in_process(spark, docs, workdir, f"date={date}", f"v-{date}", base, num_shards=4)
        model_dirs.append(base)
    return workdir, model_dirs


@pytest.fixture(scope="module")
def full(spark, r52, tmp_path_factory):
    train, _ = r52
    return train_model_in_process(spark, train, tmp_path_factory.mktemp("full"), num_shards=4)


def test_the_split_exercises_new_terms_and_new_labels_sorting_before_old_ones(r52):
    """Otherwise the test below would not cover appended term ids and class renumbering."""
    _, parts = r52
    seen: set = set()
    renumbered = False
    for docs in parts:
        labels = {d["label"] for d in docs}
        new = labels - seen
        renumbered |= bool(seen) and any(label < max(seen) for label in new)
        seen |= labels
    assert renumbered
    assert all(len(docs) > 500 for docs in parts)


def test_final_counts_equal_a_full_run_over_the_union(spark, chain, full):
    _, model_dirs = chain
    merged, reference = tables(spark, model_dirs[-1]), tables(spark, full)
    assert merged["classes"] == reference["classes"]
    assert merged["vocabulary"] == reference["vocabulary"]
    assert merged["entries"] == reference["entries"]
    assert merged["n_entries"] == len(reference["entries"])  # each (class, term) stored once
    # Classes are renumbered in sorted label order: the same ids as the full run (and sklearn).
    assert merged["class_ids"] == reference["class_ids"]
    # Shards are planned afresh from the same entries per class: the same layout.
    assert merged["shard_of"] == reference["shard_of"]
    got, want = manifest_of(model_dirs[-1]), manifest_of(full)
    assert got["counts"] == want["counts"]
    assert got["shards"] == want["shards"]


def test_term_ids_stay_put_and_new_terms_are_appended_densely(spark, chain):
    _, model_dirs = chain
    previous = None
    for model_dir in model_dirs:
        current = tables(spark, model_dir)["term_ids"]
        assert sorted(current.values()) == list(range(len(current)))
        if previous is not None:
            assert {t: current[t] for t in previous} == previous
            new = sorted(set(current) - set(previous))
            assert [current[t] for t in new] == list(range(len(previous), len(current)))
        previous = current


def test_lineage_lists_every_partition_once_with_its_parents(chain):
    workdir, model_dirs = chain
    manifests = [manifest_of(d) for d in model_dirs]
    assert [m["lineage"]["parent_version"] for m in manifests] == [None] + [f"v-{d}" for d in DATES[:-1]]
    expected = [
        {
            "uri": f"file://{workdir}/input/labelled/date={d}",
            "version": f"v-{d}",
            "run_id": f"scheduled__date={d}",
        }
        for d in DATES
    ]
    assert manifests[-1]["lineage"]["partitions"] == expected
    assert manifests[1]["lineage"]["partitions"] == expected[:2]


def sklearn_and_model_predictions(spark, model_dir, train, test, model_type):
    vectorizer = project_vectorizer()
    X_train = vectorizer.fit_transform([d["text"] for d in train])
    y_train = [d["label"] for d in train]
    reference = (MultinomialNB() if model_type == "multinomial" else ComplementNB(norm=False)).fit(X_train, y_train)
    want = reference.predict(vectorizer.transform([d["text"] for d in test]))
    want_proba = reference.predict_proba(vectorizer.transform([d["text"] for d in test])).max(axis=1)

    t = tables(spark, model_dir)
    V, C = len(t["term_ids"]), len(t["class_ids"])
    doc_count = np.zeros(C, dtype=np.int64)
    term_total = np.zeros(C, dtype=np.int64)
    shard_of = np.zeros(C, dtype=np.int64)
    for r in t["raw_classes"]:
        doc_count[r["class_id"]], term_total[r["class_id"]], shard_of[r["class_id"]] = (
            r["doc_count"], r["term_total"], r["shard"],
        )
    term_total_all = np.zeros(V, dtype=np.int64)
    for r in t["raw_vocabulary"]:
        term_total_all[r["term_id"]] = r["total_count"]
    entries = np.array([(r["class_id"], r["term_id"], r["count"]) for r in t["raw_entries"]], dtype=np.int64)

    # Documents as counts over the model's own term ids (unknown terms dropped, as CountVectorizer does).
    rows, cols = [], []
    for i, doc in enumerate(test):
        known = [t["term_ids"][token] for token in tokenize(doc["text"]) if token in t["term_ids"]]
        rows += [i] * len(known)
        cols += known
    X = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(len(test), V))
    X.sum_duplicates()

    results = []
    for shard in np.unique(shard_of):
        class_ids = np.flatnonzero(shard_of == shard)
        mine = np.isin(entries[:, 0], class_ids)
        model = scoring.load_shard_model(
            class_ids, doc_count, term_total, entries[mine, 0], entries[mine, 1], entries[mine, 2],
            V, model_type, 1.0, True, term_total_all=term_total_all,
        )
        results.append(scoring.shard_result(model, X))
    prediction = combine_shard_results(results)
    labels = {class_id: label for label, class_id in t["class_ids"].items()}
    got = np.array([labels[c] for c in prediction.class_id])
    return want, want_proba, got, prediction.probability


@pytest.mark.parametrize("model_type", ["multinomial", "complement"])
def test_predictions_of_the_final_model_equal_sklearn_on_the_union(spark, chain, r52, corpus, model_type):
    _, model_dirs = chain
    train, _ = r52
    test = corpus("reuters-r52", "test")
    want, want_proba, got, got_proba = sklearn_and_model_predictions(spark, model_dirs[-1], train, test, model_type)
    assert len(set(want)) > 20  # many classes predicted: a real comparison
    np.testing.assert_array_equal(got, want)
    if model_type == "multinomial":
        np.testing.assert_allclose(got_proba, want_proba, rtol=1e-9)


def test_refolding_a_partition_is_refused_and_a_retry_of_the_same_run_does_not_double_count(spark, chain, r52, full):
    workdir, model_dirs = chain
    _, parts = r52
    # The scheduled run of 2026-03-02 again, on top of the latest model: refused, nothing published.
    with pytest.raises(AlreadyFoldedError, match=r"date=2026-03-02 is already part of model v-2026-03-03.*"
                       r"folded in by model version v-2026-03-02"):
        fold_partition_in_process(spark, parts[1], workdir, "date=2026-03-02", "v-again", model_dirs[-1])
    assert not (workdir / "models" / "v-again").exists()
    assert (workdir / "models" / "LATEST").read_text().strip() == "v-2026-03-03"
    # A retry of the last run (its tasks cleared): its plan takes its own version's parent as base,
    # and it republishes the same version with the same counts.
    fold_partition_in_process(spark, parts[-1], workdir, f"date={DATES[-1]}", f"v-{DATES[-1]}", model_dirs[-2],
                              num_shards=4)
    again = tables(spark, model_dirs[-1])
    assert again["entries"] == tables(spark, full)["entries"]
    partitions = manifest_of(model_dirs[-1])["lineage"]["partitions"]
    assert [p["uri"].rsplit("/", 1)[1] for p in partitions] == [f"date={d}" for d in DATES]


# --- pure parts ------------------------------------------------------------------------------


def test_merged_priors_renumber_classes_in_sorted_label_order():
    base = [(0, "b", 5), (1, "d", 2)]
    delta = [(0, "a", 1), (1, "d", 3), (2, "e", 4)]
    priors, base_remap, delta_remap = merged_priors(base, delta)
    assert priors == [(0, "a", 1), (1, "b", 5), (2, "d", 5), (3, "e", 4)]
    assert base_remap == {0: 1, 1: 2}
    assert delta_remap == {0: 0, 1: 2, 2: 3}


@pytest.mark.parametrize(
    "new, folded, refused",
    [
        ("hdfs://nn:8020/in/date=2026-03-01", "hdfs://nn:8020/in/date=2026-03-01/", True),
        ("file:/data/in/date=2026-03-01", "file:///data/in/date=2026-03-01", True),  # Spark's spelling
        ("hdfs://nn:8020/in/date=2026-03-01", "hdfs://nn:8020/in", True),  # inside a folded folder
        ("hdfs://nn:8020/in", "hdfs://nn:8020/in/date=2026-03-01", True),  # contains a folded folder
        ("hdfs://nn:8020/in/date=2026-03-02", "hdfs://nn:8020/in/date=2026-03-01", False),
        ("hdfs://nn:8020/in/date=2026-03-010", "hdfs://nn:8020/in/date=2026-03-01", False),
        ("hdfs://other:8020/in/date=2026-03-01", "hdfs://nn:8020/in/date=2026-03-01", False),
    ],
)
def test_check_not_folded(new, folded, refused):
    entries = [{"uri": folded, "version": "v1", "run_id": "r1"}]
    if refused:
        with pytest.raises(AlreadyFoldedError, match="already part of model base.*folded in by model version v1"):
            check_not_folded([new], entries, "base")
    else:
        check_not_folded([new], entries, "base")


def test_folder_uri_spellings_agree():
    assert folder_uri("file:/a/b%3Dc/") == folder_uri("file:///a/b=c") == "file:///a/b=c"
