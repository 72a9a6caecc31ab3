"""Naive Bayes prediction (vectorise -> one pass per shard -> combine) against scikit-learn.

Models are trained with the library functions on the shared session (helpers.train_model_in_process)
and reused across tests; model type and smoothing live in the manifest (applied when a shard is
loaded), so the variants of one trained model are copies with an edited manifest, not retrainings.
Every expected value comes from scikit-learn fitted on the same training documents, or by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import local_path, predict_in_process, project_vectorizer

pytestmark = pytest.mark.spark

PROBABILITY_TOLERANCE = 1e-9
TOP_N = 3


def model_variant(base_dir: str, target: Path, model_type: str, alpha: float, fit_prior: bool) -> str:
    """A copy of a trained model with another model type / smoothing in its manifest."""
    if not target.exists():
        shutil.copytree(local_path(base_dir), target)
        manifest_path = target / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["model"] = {"type": model_type, "alpha": alpha, "fit_prior": fit_prior}
        manifest_path.write_text(json.dumps(manifest))
    return target.as_uri()


# --- the scikit-learn reference ----------------------------------------------------------------


def vectorise(train: list, test: list):
    """(X_train, y_train, X_test): scikit-learn's counts of the documents, with the library's tokenizer."""
    vectorizer = project_vectorizer()
    X_train = vectorizer.fit_transform([d["text"] for d in train])
    return X_train, [d["label"] for d in train], vectorizer.transform([d["text"] for d in test])


def sklearn_fit_predict(vectorised, model_type: str, alpha: float, fit_prior: bool):
    """(class labels, predict_proba of the test documents) of the scikit-learn equivalent."""
    from sklearn.naive_bayes import ComplementNB, MultinomialNB

    X_train, y_train, X_test = vectorised
    if model_type == "multinomial":
        model = MultinomialNB(alpha=alpha, fit_prior=fit_prior)
    else:
        model = ComplementNB(alpha=alpha, norm=False, fit_prior=fit_prior)
    model.fit(X_train, y_train)
    return list(model.classes_), model.predict_proba(X_test)


def sklearn_reference(train: list, test: list, model_type: str, alpha: float, fit_prior: bool):
    return sklearn_fit_predict(vectorise(train, test), model_type, alpha, fit_prior)


def assert_matches_sklearn(predictions: dict, test: list, classes: list, proba: np.ndarray, top_n: int) -> None:
    expected = [classes[i] for i in np.argmax(proba, axis=1)]
    got = [predictions[d["id"]]["label"] for d in test]
    disagreements = [(d["id"], e, g) for d, e, g in zip(test, expected, got) if e != g]
    assert not disagreements, f"{len(disagreements)} of {len(test)} labels differ from scikit-learn: {disagreements[:5]}"
    got_probability = np.array([predictions[d["id"]]["probability"] for d in test])
    np.testing.assert_allclose(got_probability, proba.max(axis=1), rtol=0, atol=PROBABILITY_TOLERANCE)
    if top_n:
        order = np.argsort(-proba, axis=1, kind="stable")[:, :top_n]
        for i, doc in enumerate(test):
            top = predictions[doc["id"]]["top_n"]
            assert [t["label"] for t in top] == [classes[j] for j in order[i]], doc["id"]
            np.testing.assert_allclose(
                [t["probability"] for t in top], proba[i, order[i]], rtol=0, atol=PROBABILITY_TOLERANCE
            )


# --- shared trained models and prediction runs -------------------------------------------------

CORPORA = {"r8": "reuters-r8", "r52": "reuters-r52"}


@pytest.fixture(scope="module")
def runs(spark, corpus, tmp_path_factory):
    """``runs(corpus, shards, model_type, alpha, fit_prior)`` -> (predictions, summary, run, model_dir),
    each model trained once and each prediction run made once per module."""
    from helpers import train_model_in_process

    base = tmp_path_factory.mktemp("nb_predict_models")
    trained, done = {}, {}

    def get(name: str, shards: int, model_type: str, alpha: float, fit_prior: bool, path: str = "per_shard"):
        key = (name, shards, model_type, alpha, fit_prior, path)
        if key not in done:
            if (name, shards) not in trained:
                trained[(name, shards)] = train_model_in_process(
                    spark, corpus(CORPORA[name], "train"), base / f"{name}-{shards}", num_shards=shards
                )
            tag = f"{name}-{shards}-{model_type}-{alpha}-{fit_prior}"
            model_dir = model_variant(trained[(name, shards)], base / "variants" / tag, model_type, alpha, fit_prior)
            predictions, summary, run = predict_in_process(
                spark, model_dir, corpus(CORPORA[name], "test"), base / "runs" / f"{tag}-{path}", top_n=TOP_N, path=path
            )
            done[key] = (predictions, summary, run, model_dir)
        return done[key]

    return get


@pytest.fixture(scope="module")
def reuters_vectorised(corpus):
    """``reuters_vectorised(name)``: :func:`vectorise` of a Reuters corpus, made once per module."""
    made: dict = {}

    def get(name: str):
        if name not in made:
            made[name] = vectorise(corpus(CORPORA[name], "train"), corpus(CORPORA[name], "test"))
        return made[name]

    return get


CASES = [
    ("r8", 3, "multinomial", 1.0, True),
    ("r8", 3, "complement", 0.5, True),
    ("r52", 7, "multinomial", 0.1, False),
    ("r52", 7, "complement", 1.0, True),
]


@pytest.mark.parametrize("path", ["per_shard", "single_pass"])
@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_predictions_equal_sklearn_on_reuters(runs, corpus, reuters_vectorised, case, path):
    name, shards, model_type, alpha, fit_prior = case
    predictions, summary, _, _ = runs(*case, path=path)
    assert summary["path"] == path
    test = corpus(CORPORA[name], "test")
    classes, proba = sklearn_fit_predict(reuters_vectorised(name), model_type, alpha, fit_prior)
    assert len(predictions) == len(test)
    assert_matches_sklearn(predictions, test, classes, proba, TOP_N)
    assert all(predictions[d["id"]]["true_label"] == d["label"] for d in test)
    assert summary["counts"] == {
        "read": len(test), "rejected": 0, "rejected_by_reason": {}, "accepted": len(test), "blank_lines": 0,
        "labels_changed": {"from_integer": 0, "whitespace_stripped": 0}, "predicted": len(test), "reconciled": True,
    }


# (a per-shard run, the run it must equal): the same documents scored with the classes grouped
# otherwise. A model trained in one shard against one in three; and seven shard passes against the
# single pass, which loads the whole model as one shard (both runs made for the tests above).
SHARD_GROUPINGS = {
    "1-shard-model": (("r8", 1, "multinomial", 1.0, True), ("r8", 3, "multinomial", 1.0, True, "per_shard")),
    "7-shards-or-one-pass": (("r52", 7, "multinomial", 0.1, False), ("r52", 7, "multinomial", 0.1, False, "single_pass")),
}


@pytest.mark.parametrize("grouping", SHARD_GROUPINGS)
def test_predictions_do_not_depend_on_the_number_of_shards(runs, grouping):
    case, (*reference_case, reference_path) = SHARD_GROUPINGS[grouping]
    reference, reference_summary, _, _ = runs(*reference_case, path=reference_path)
    predictions, summary, _, _ = runs(*case)
    assert summary["path"] == "per_shard" and len(summary["shard_memory"]) == case[1]
    assert reference_summary["path"] == reference_path
    assert predictions.keys() == reference.keys()
    for doc_id, expected in reference.items():
        got = predictions[doc_id]
        assert (got["label"], got["class_id"]) == (expected["label"], expected["class_id"]), doc_id
        assert [t["class_id"] for t in got["top_n"]] == [t["class_id"] for t in expected["top_n"]], doc_id
        # The log-sum-exp is merged over a different grouping of the classes: rounding only.
        assert got["probability"] == pytest.approx(expected["probability"], rel=0, abs=1e-12)


def test_report_metrics_equal_sklearn_metrics(runs, corpus):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    predictions, summary, run, _ = runs("r8", 3, "multinomial", 1.0, True)
    test = corpus("reuters-r8", "test")
    y_true = [d["label"] for d in test]
    y_pred = [predictions[d["id"]]["label"] for d in test]
    metrics = json.loads((local_path(run) / "report" / "metrics.json").read_text())
    labels = sorted(set(y_true) | set(y_pred))
    assert metrics["labels"] == labels
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        got = metrics["per_class"][label]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx(
            (precision[i], recall[i], f1[i], support[i]), abs=1e-12
        )
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert summary["metrics"]["accuracy"] == metrics["accuracy"]
    # Published outputs only: no temporary or displaced sibling is left behind.
    assert sorted(p.name for p in local_path(run).iterdir() if not p.name.startswith(".")) == [
        "predictions", "report", "scores", "vectors"
    ]
    leftovers = [p for p in local_path(run).rglob("*") if p.name.startswith("_tmp-") or ".replaced-" in p.name]
    assert leftovers == []


def test_the_report_task_draws_the_pictures_and_the_page_from_the_published_metrics(runs):
    """The Spark application publishes the numbers only; the DAG's report task (no Spark) draws
    the pictures and then the page beside them, each renamed into place."""
    from nbknn_airflow.report_pages import publish_report_pages

    _, _, run, _ = runs("r8", 3, "multinomial", 1.0, True)
    report = local_path(run) / "report"
    published = sorted(p.name for p in report.iterdir())
    assert published == ["_summary.json", "metrics.json", "summary.json"], published
    pages = publish_report_pages(f"{run}/report")
    drawn = ["per_class_f1.png", "confusion_matrix.png", "report.html"]
    assert pages == {"page": f"{run}/report/report.html", "files": [f"{run}/report/{name}" for name in drawn]}
    assert sorted(p.name for p in report.iterdir()) == sorted(published + drawn)  # no temporary file left
    metrics = json.loads((report / "metrics.json").read_text())
    with Image.open(report / "confusion_matrix.png") as picture:
        assert picture.format == "PNG" and min(picture.size) > 300
    page = (report / "report.html").read_text()
    assert f"accuracy {metrics['accuracy']:.4f}" in page and all(label in page for label in metrics["labels"])


def test_compact_model_takes_at_most_12_bytes_per_entry(runs, spark):
    from nbknn.naive_bayes.model_reader import load_model_shard, read_model_manifest
    from nbknn.naive_bayes.shard_pass import model_memory

    _, summary, _, model_dir = runs("r52", 7, "complement", 1.0, True)
    manifest = read_model_manifest(spark, model_dir)
    memory = summary["shard_memory"]
    assert [m["shard"] for m in memory] == list(range(7))
    assert sum(m["entries"] for m in memory) == manifest["counts"]["entries"]
    for m in memory:
        k = m["classes"]
        assert m["bytes_entries"] == 12 * m["entries"]  # float64 value + int32 column index
        assert m["bytes_per_entry"] <= 12
        assert m["bytes_per_class"] == 4 * (k + 1) + 3 * 8 * k  # indptr + ids, prior, default
        assert m["bytes_per_term"] == 0  # complement's per-term constant is left out of the broadcast
    vocabulary_size = manifest["counts"]["vocabulary_size"]
    with_base = model_memory(load_model_shard(spark, model_dir, manifest, 0, include_term_base=True))
    assert with_base["bytes_per_term"] == 8 * vocabulary_size
    # The plan's estimate of the whole model (which picks the single pass) bounds what it loads.
    from nbknn.contract import scoring_bytes

    _, single, _, _ = runs("r52", 7, "complement", 1.0, True, path="single_pass")
    (whole,) = single["shard_memory"]
    assert (whole["shard"], whole["entries"], whole["classes"]) == ("all", manifest["counts"]["entries"], 52)
    assert 0.95 * scoring_bytes(manifest) <= whole["bytes_total"] <= scoring_bytes(manifest)
    total_entries = sum(m["bytes_entries"] for m in memory)
    print(
        f"\nR52 compact model: {manifest['counts']['entries']} entries, {total_entries} bytes "
        f"({total_entries / manifest['counts']['entries']:.2f} bytes/entry), per-class "
        f"{sum(m['bytes_per_class'] for m in memory)} bytes, V={vocabulary_size}"
    )


# --- edge cases on small hand-made models ------------------------------------------------------

EDGE_TRAIN = [
    {"id": "t1", "label": "café", "text": "Naïve café crème brûlée, CAFÉ au lait"},
    {"id": "t2", "label": "café", "text": "crème fraîche et café noir"},
    {"id": "t3", "label": "tokyo", "text": "東京 大阪 東京 Ünïcödé straße"},
    {"id": "t4", "label": "tokyo", "text": "東京タワー 大阪 京都"},
    {"id": "t5", "label": "zahlen", "text": "eins zwei drei ½ ² 42 007"},
    {"id": "t6", "label": "zahlen", "text": "zwei drei vier 42"},
]
EDGE_TEST = [
    {"id": "empty", "label": "café", "text": ""},
    {"id": "unknown", "label": "tokyo", "text": "qqq zzzz xyzzy"},
    {"id": "single-chars", "text": "a b c d ."},
    {"id": "unicode-upper", "label": "café", "text": "CAFÉ NAÏVE Crème"},
    {"id": "cjk", "label": "tokyo", "text": "東京 京都 and straße"},
    {"id": "numbers", "label": "zahlen", "text": "42 zwei ² unknownword"},
]


@pytest.fixture(scope="module")
def edge_model(spark, tmp_path_factory):
    from helpers import train_model_in_process

    return train_model_in_process(spark, EDGE_TRAIN, tmp_path_factory.mktemp("edge_model"), num_shards=2)


@pytest.mark.parametrize("path", ["per_shard", "single_pass"])
@pytest.mark.parametrize("model_type", ["multinomial", "complement"])
def test_empty_unknown_and_unicode_documents_match_sklearn(spark, edge_model, tmp_path, model_type, path):
    model_dir = model_variant(edge_model, tmp_path / "model", model_type, 1.0, True)
    predictions, summary, run = predict_in_process(spark, model_dir, EDGE_TEST, tmp_path, top_n=3, path=path)
    classes, proba = sklearn_reference(EDGE_TRAIN, EDGE_TEST, model_type, 1.0, True)
    assert_matches_sklearn(predictions, EDGE_TEST, classes, proba, 3)
    if path == "per_shard":
        vectors = {r["doc_id"]: r for r in spark.read.parquet(f"{run}/vectors").collect()}
        for doc_id in ("empty", "unknown", "single-chars"):
            assert vectors[doc_id]["term_ids"] == [] and vectors[doc_id]["counts"] == []
    assert summary["vectors"]["without_known_term"] == 3
    if model_type == "multinomial":
        # No known term: the prior-only answer; the classes have 2 documents each, so a 3-way tie.
        assert predictions["empty"]["label"] == "café" and predictions["empty"]["probability"] == pytest.approx(1 / 3)
    assert predictions["single-chars"]["true_label"] is None
    assert summary["metrics"]["labelled_documents"] == 5


VECTORISER_DOCS = EDGE_TEST + [{"id": "repeats", "text": "café café CAFÉ 東京 café zwei qqq"}]


def _expected_vectors(spark, model_dir: str) -> tuple[dict, dict]:
    """({doc id: (term ids, counts, tokens)}, the vector totals) of VECTORISER_DOCS: a Counter over
    the Python tokeniser restricted to the model's vocabulary."""
    from collections import Counter

    from nbknn import contract
    from nbknn.inputs.tokenizer import tokenize

    term_id = {r["term"]: r["term_id"] for r in spark.read.parquet(contract.vocabulary_uri(model_dir)).collect()}
    expected = {}
    for doc in VECTORISER_DOCS:
        tokens = tokenize(doc["text"])
        known = Counter(term_id[t] for t in tokens if t in term_id)
        ids = sorted(known)
        expected[doc["id"]] = (ids, [known[i] for i in ids], len(tokens))
    totals = {
        "documents": len(VECTORISER_DOCS),
        "labelled": sum(1 for d in VECTORISER_DOCS if "label" in d),
        "without_known_term": sum(1 for ids, _, _ in expected.values() if not ids),
        "tokens": sum(n for _, _, n in expected.values()),
        "known_tokens": sum(sum(c) for _, c, _ in expected.values()),
    }
    return expected, totals


def _max_lookup_terms(spark, model_dir: str, vectoriser: str) -> int:
    """The largest vocabulary shipped to the tasks that makes the run use ``vectoriser``."""
    from nbknn import contract

    vocabulary_size = spark.read.parquet(contract.vocabulary_uri(model_dir)).count()
    return vocabulary_size if vectoriser == "in_row_lookup" else vocabulary_size - 1


@pytest.mark.parametrize("vectoriser", ["in_row_lookup", "join"])
def test_both_vectorisers_count_each_documents_known_terms(spark, edge_model, tmp_path, vectoriser):
    """The in-row lookup and the join used above max_lookup_terms write the same vectors and totals,
    and both equal a Counter over the Python tokeniser restricted to the model's vocabulary."""
    from helpers import write_jsonl
    from nbknn.inputs.documents import InputSpec
    from nbknn.naive_bayes.vectorize import run_vectorize

    input_path = write_jsonl(tmp_path / "docs.jsonl", VECTORISER_DOCS)
    vectors_uri = (tmp_path / "vectors").as_uri()
    summary = run_vectorize(spark, InputSpec(uri=input_path.as_uri()), edge_model, vectors_uri,
                            (tmp_path / "rejects").as_uri(), 0.0,
                            max_lookup_terms=_max_lookup_terms(spark, edge_model, vectoriser))
    got = {r["doc_id"]: (r["term_ids"], r["counts"], r["tokens"]) for r in spark.read.parquet(vectors_uri).collect()}
    expected, totals = _expected_vectors(spark, edge_model)
    assert summary["vectoriser"] == vectoriser
    assert got == expected
    assert summary["vectors"] == totals


@pytest.mark.parametrize("vectoriser", ["in_row_lookup", "join"])
def test_the_single_pass_counts_the_same_totals_with_both_vectorisers(spark, edge_model, tmp_path, vectoriser):
    """The single pass counts and scores the token lists in one Python call with the in-row lookup
    (its term counts never reach a frame): its totals still equal the Counter's, as the join's do."""
    from helpers import write_jsonl
    from nbknn.inputs.documents import InputSpec
    from nbknn.naive_bayes.single_pass import run_predict_single_pass

    spec = InputSpec(uri=write_jsonl(tmp_path / "docs.jsonl", VECTORISER_DOCS).as_uri())
    run = (tmp_path / "run").as_uri()
    summary = run_predict_single_pass(spark, spec, edge_model, f"{run}/predictions", f"{run}/report",
                                      f"{run}/rejects", 0.0,
                                      max_lookup_terms=_max_lookup_terms(spark, edge_model, vectoriser))
    assert summary["vectoriser"] == vectoriser
    assert summary["vectors"] == _expected_vectors(spark, edge_model)[1]
    assert summary["counts"]["predicted"] == len(VECTORISER_DOCS)


def test_single_class_model_matches_sklearn(spark, tmp_path):
    from helpers import train_model_in_process

    train = [{"id": f"s{i}", "label": "only", "text": text} for i, text in enumerate(["alpha beta", "beta gamma", "ünï"])]
    model_dir = train_model_in_process(spark, train, tmp_path / "model", num_shards=1)
    test = [{"id": "x", "text": "beta beta delta"}, {"id": "y", "text": ""}]
    for model_type in ("multinomial", "complement"):
        variant = model_variant(model_dir, tmp_path / model_type, model_type, 1.0, True)
        predictions, summary, _ = predict_in_process(spark, variant, test, tmp_path / f"run-{model_type}", top_n=2)
        classes, proba = sklearn_reference(train, test, model_type, 1.0, True)
        assert_matches_sklearn(predictions, test, classes, proba, 2)
        assert {p["label"] for p in predictions.values()} == {"only"}
        assert all(p["probability"] == 1.0 for p in predictions.values())
        assert summary["metrics"] is None and predictions["x"]["true_label"] is None


@pytest.fixture(scope="module")
def tie_model(spark, tmp_path_factory):
    """Two classes with identical counts, one per shard: every document is an exact tie."""
    from helpers import train_model_in_process

    text = "red green blue green"
    train = [{"id": "a", "label": "second", "text": text}, {"id": "b", "label": "first", "text": text}]
    return train_model_in_process(spark, train, tmp_path_factory.mktemp("tie_model"), num_shards=2)


@pytest.mark.parametrize("path", ["per_shard", "single_pass"])
def test_ties_go_to_the_lower_class_id_across_shards(spark, tie_model, tmp_path, path):
    manifest = json.loads((local_path(tie_model) / "manifest.json").read_text())
    assert [s["class_ids"] for s in manifest["shards"]] in ([[0], [1]], [[1], [0]])
    test = [{"id": "t1", "text": "green blue"}, {"id": "t2", "text": "unknown"}, {"id": "t3", "text": "RED"}]
    predictions, _, _ = predict_in_process(spark, tie_model, test, tmp_path, top_n=2, path=path)
    classes, proba = sklearn_reference(
        [{"label": "second", "text": "red green blue green"}, {"label": "first", "text": "red green blue green"}],
        test, "multinomial", 1.0, True,
    )
    assert_matches_sklearn(predictions, test, classes, proba, 2)
    for p in predictions.values():
        assert (p["label"], p["class_id"]) == ("first", 0) and p["probability"] == pytest.approx(0.5, abs=1e-15)
        assert [t["label"] for t in p["top_n"]] == ["first", "second"]


@pytest.mark.parametrize("path", ["per_shard", "single_pass"])
def test_duplicate_ids_and_bad_records_are_quarantined(spark, tie_model, tmp_path, path):
    from nbknn.inputs.documents import TooManyRejects

    docs = [
        {"id": "d1", "text": "red"},
        {"id": "d1", "text": "green"},
        {"id": "d2", "text": "blue"},
        '{"id": "d3", "text": ',  # malformed
        {"id": "d4", "text": 7},  # wrong type
    ]
    predictions, summary, run = predict_in_process(spark, tie_model, docs, tmp_path / "ok", max_reject_fraction=0.9,
                                                   path=path)
    assert sorted(predictions) == ["d2"]
    assert summary["counts"]["read"] == 5 and summary["counts"]["predicted"] == 1
    assert summary["counts"]["rejected_by_reason"] == {"duplicate_id": 2, "invalid_text_type": 1, "malformed_json": 1}
    assert summary["counts"]["reconciled"]
    rejects = spark.read.json(f"{run}/rejects").collect()
    assert sorted(r["reason"] for r in rejects) == ["duplicate_id", "duplicate_id", "invalid_text_type", "malformed_json"]
    with pytest.raises(TooManyRejects, match=r"duplicated document ids include \['d1'\]"):
        predict_in_process(spark, tie_model, docs, tmp_path / "strict", max_reject_fraction=0.5, path=path)
    # The vectors (or predictions) were written before the rejects were counted: refused, they are not published,
    # and no temporary directory is left behind; the rejects are, for a person to look at.
    assert sorted(p.name for p in (tmp_path / "strict" / "run").iterdir()) == ["rejects"]


@pytest.mark.parametrize("path", ["per_shard", "single_pass"])
@pytest.mark.parametrize("on_the_driver", [True, False], ids=["small-output-on-the-driver", "by-spark"])
def test_shared_ids_are_looked_for_after_the_write(spark, tie_model, tmp_path, monkeypatch, path, on_the_driver):
    """Input without shared ids is written once, without the window over whole records (a shuffle
    of every text); input with them goes through it, and only the unshared ids are predicted.
    Small outputs are summarised on the driver, others by Spark queries: both find the shared ids
    and count the confusion of what was written (a Counter of the predictions read back, and
    scikit-learn's confusion matrix of the labelled ones)."""
    from collections import Counter

    from sklearn.metrics import confusion_matrix

    from nbknn.naive_bayes import outputs, vectorize

    if not on_the_driver:
        monkeypatch.setattr(outputs, "DRIVER_SUMMARY_MAX_BYTES", 0)
    windows = []
    window = vectorize.with_duplicate_ids_rejected
    monkeypatch.setattr(vectorize, "with_duplicate_ids_rejected", lambda documents: windows.append(1) or window(documents))
    def assert_the_counts_are_the_written_predictions(predictions, summary, run, labelled_documents):
        assert summary["counts"]["reconciled"]
        assert summary["predicted_by_label"] == dict(Counter(p["label"] for p in predictions.values()))
        labelled = [p for p in predictions.values() if p["true_label"] is not None]
        metrics = json.loads((local_path(run) / "report" / "metrics.json").read_text())
        assert len(labelled) == labelled_documents and metrics["confusion_matrix"] == confusion_matrix(
            [p["true_label"] for p in labelled], [p["label"] for p in labelled], labels=metrics["labels"]).tolist()

    labelled = [{"id": f"e{i}", "label": "second" if i % 3 else "first", "text": "green blue"} for i in range(6)]
    docs = [{"id": "d1", "text": "red"}, {"id": "d2", "text": "blue"}, *labelled]
    predictions, summary, run = predict_in_process(spark, tie_model, docs, tmp_path / "unshared", path=path)
    assert sorted(predictions) == ["d1", "d2", *(f"e{i}" for i in range(6))] and windows == []
    assert_the_counts_are_the_written_predictions(predictions, summary, run, 6)
    predictions, summary, run = predict_in_process(spark, tie_model, [*docs, {"id": "e2", "text": "green"}],
                                                   tmp_path / "shared", max_reject_fraction=0.9, path=path)
    assert sorted(predictions) == ["d1", "d2", *(f"e{i}" for i in range(6) if i != 2)] and windows == [1]
    assert summary["counts"]["rejected_by_reason"] == {"duplicate_id": 2}
    assert_the_counts_are_the_written_predictions(predictions, summary, run, 5)


def test_a_damaged_model_is_reported_before_a_missing_input_in_one_pass(spark, tie_model, tmp_path):
    """The single pass reads the model from driver threads while it plans the input's read: an
    error in either thread reaches the caller, the model's first."""
    import shutil

    from nbknn.inputs.documents import InputError, InputSpec
    from nbknn.naive_bayes.model_reader import ModelError
    from nbknn.naive_bayes.single_pass import run_predict_single_pass

    damaged = tmp_path / "damaged"
    shutil.copytree(local_path(tie_model), damaged)
    manifest = json.loads((damaged / "manifest.json").read_text())
    manifest["shards"][0]["entries"] += 1
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    run = (tmp_path / "run").as_uri()
    outputs = (f"{run}/predictions", f"{run}/report", f"{run}/rejects", 0.0)
    missing_input = InputSpec(uri=(tmp_path / "no-such-input.jsonl").as_uri())
    with pytest.raises(ModelError, match="the manifest says"):
        run_predict_single_pass(spark, missing_input, damaged.as_uri(), *outputs)
    with pytest.raises(InputError):
        run_predict_single_pass(spark, missing_input, tie_model, *outputs)
    assert not (tmp_path / "run").exists()


def test_combiner_refuses_missing_or_stale_shard_scores(spark, tie_model, tmp_path):
    from nbknn.common import fs
    from nbknn.inputs.documents import InputSpec
    from nbknn.naive_bayes.combine import run_combine
    from nbknn.naive_bayes.outputs import IncompleteScores
    from nbknn.naive_bayes.shard_pass import run_predict_shard
    from nbknn.naive_bayes.vectorize import run_vectorize

    docs = [{"id": "x", "text": "red"}, {"id": "y", "text": "blue"}]
    _, _, run = predict_in_process(spark, tie_model, docs, tmp_path)
    args = (tie_model, f"{run}/vectors", f"{run}/scores", f"{run}/predictions2", f"{run}/report2")

    # A retried shard pass replaces its own output whole, with the same rows.
    before = sorted(map(tuple, spark.read.parquet(f"{run}/scores/shard=1").collect()))
    run_predict_shard(spark, tie_model, f"{run}/vectors", 1, f"{run}/scores/shard=1", 0)
    assert sorted(map(tuple, spark.read.parquet(f"{run}/scores/shard=1").collect())) == before
    assert fs.list_names(spark, f"{run}/scores") == ["shard=0", "shard=1"]

    fs.delete(spark, f"{run}/scores/shard=1")
    with pytest.raises(IncompleteScores, match=r"shard 1: no published scores"):
        run_combine(spark, *args)
    run_predict_shard(spark, tie_model, f"{run}/vectors", 1, f"{run}/scores/shard=1", 0)
    run_combine(spark, *args)  # complete again
    # Vectors rebuilt after the shards scored them: every shard is now stale.
    input_uri = (tmp_path / "input" / "docs.jsonl").as_uri()
    run_vectorize(spark, InputSpec(uri=input_uri), tie_model, f"{run}/vectors", f"{run}/rejects", 0.0)
    with pytest.raises(IncompleteScores, match=r"shard 0: scored an older version of the vectors"):
        run_combine(spark, *args)
