"""Per-prediction top terms (nb_predict's ``top_terms``) against scikit-learn, on both paths.

The oracle is scikit-learn fitted on the same training documents: the winner and the runner-up
from its joint log-likelihoods, each term's contribution ``x[t] * (feature_log_prob_[c, t] -
feature_log_prob_[r, t])`` from its ``feature_log_prob_``, the positive ones largest first (ties to
the lower feature index: CountVectorizer sorts its features as the model numbers its terms).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import local_path, project_vectorizer, write_jsonl

pytestmark = pytest.mark.spark

TOP_TERMS = 5
CONTRIBUTION_TOLERANCE = 1e-9
EXTRA_TEST = [
    {"id": "empty", "text": ""},
    {"id": "unknown", "text": "qqqzzz xxyyzz"},
]


def predict(spark, model_dir: str, docs: list, workdir: Path, path: str, top_terms: int, top_n: int = 0):
    """A prediction run with the library functions the entry scripts call; (predictions by id, run URI)."""
    from nbknn.contract import scores_shard_uri
    from nbknn.inputs.documents import InputSpec
    from nbknn.naive_bayes.combine import run_combine
    from nbknn.naive_bayes.shard_pass import run_predict_shard
    from nbknn.naive_bayes.single_pass import run_predict_single_pass
    from nbknn.naive_bayes.vectorize import run_vectorize

    spec = InputSpec(uri=write_jsonl(workdir / "input" / "docs.jsonl", docs).as_uri())
    run = (workdir / "run").as_uri()
    if path == "single_pass":
        run_predict_single_pass(spark, spec, model_dir, f"{run}/predictions", f"{run}/report", f"{run}/rejects",
                                0.0, top_n, top_terms=top_terms)
    else:
        manifest = json.loads((local_path(model_dir) / "manifest.json").read_text())
        run_vectorize(spark, spec, model_dir, f"{run}/vectors", f"{run}/rejects", 0.0)
        for shard in range(manifest["num_shards"]):
            run_predict_shard(spark, model_dir, f"{run}/vectors", shard, scores_shard_uri(f"{run}/scores", shard),
                              top_n, top_terms)
        run_combine(spark, model_dir, f"{run}/vectors", f"{run}/scores", f"{run}/predictions", f"{run}/report",
                    top_n, top_terms=top_terms)
    frame = spark.read.parquet(f"{run}/predictions")
    return {row["doc_id"]: row.asDict(recursive=True) for row in frame.collect()}, frame.columns, run


def sklearn_top_terms(train: list, test: list, model_type: str, alpha: float, fit_prior: bool, k: int):
    """{doc id: (winner label, runner-up label, [(term, count, contribution)])} from scikit-learn."""
    from sklearn.naive_bayes import ComplementNB, MultinomialNB


    vectorizer = project_vectorizer()
    X_train = vectorizer.fit_transform([d["text"] for d in train])
    if model_type == "multinomial":
        model = MultinomialNB(alpha=alpha, fit_prior=fit_prior)
    else:
        model = ComplementNB(alpha=alpha, norm=False, fit_prior=fit_prior)
    model.fit(X_train, [d["label"] for d in train])
    X = vectorizer.transform([d["text"] for d in test]).tocsr()
    jll = model.predict_joint_log_proba(X)
    names = vectorizer.get_feature_names_out()
    expected = {}
    for i, doc in enumerate(test):
        winner, runner_up = np.argsort(-jll[i], kind="stable")[:2]
        row = X[i]
        contributions = row.data * (model.feature_log_prob_[winner, row.indices]
                                    - model.feature_log_prob_[runner_up, row.indices])
        ranked = sorted((-x, t, n) for t, n, x in zip(row.indices, row.data, contributions) if x > 0)[:k]
        expected[doc["id"]] = (model.classes_[winner], model.classes_[runner_up],
                               [(str(names[t]), int(n), -neg) for neg, t, n in ranked])
    return expected


@pytest.fixture(scope="module")
def r8(corpus):
    train = corpus("reuters-r8", "train")[:600]
    test = corpus("reuters-r8", "test")[:150] + EXTRA_TEST
    return train, test


@pytest.fixture(scope="module")
def r8_models(spark, r8, tmp_path_factory):
    """The R8 slice trained once with 3 shards, and a variant per (model type, alpha, fit_prior)."""
    from helpers import train_model_in_process

    base = tmp_path_factory.mktemp("top_terms")
    trained = train_model_in_process(spark, r8[0], base / "trained", num_shards=3)
    variants = {}

    def variant(model_type: str, alpha: float, fit_prior: bool) -> str:
        key = (model_type, alpha, fit_prior)
        if key not in variants:
            import shutil

            target = base / "-".join(map(str, key))
            shutil.copytree(local_path(trained), target)
            manifest = json.loads((target / "manifest.json").read_text())
            manifest["model"] = {"type": model_type, "alpha": alpha, "fit_prior": fit_prior}
            (target / "manifest.json").write_text(json.dumps(manifest))
            variants[key] = target.as_uri()
        return variants[key]

    return variant


CASES = [("multinomial", 1.0, True), ("complement", 0.3, False)]


@pytest.mark.parametrize("path", ["per_shard", "single_pass"])
@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_top_terms_equal_sklearn_contributions(spark, r8, r8_models, tmp_path, case, path):
    train, test = r8
    model_dir = r8_models(*case)
    predictions, columns, _ = predict(spark, model_dir, test, tmp_path, path, TOP_TERMS, top_n=2)
    expected = sklearn_top_terms(train, test, *case, TOP_TERMS)
    assert columns.index("top_terms") == columns.index("top_n") + 1
    for doc in test:
        got = predictions[doc["id"]]
        label, runner_up, terms = expected[doc["id"]]
        assert got["label"] == label
        assert got["top_n"][1]["label"] == runner_up
        assert [(t["term"], t["count"]) for t in got["top_terms"]] == [(t, n) for t, n, _ in terms], doc["id"]
        np.testing.assert_allclose([t["contribution"] for t in got["top_terms"]], [x for _, _, x in terms],
                                   rtol=CONTRIBUTION_TOLERANCE, atol=0)
    assert predictions["empty"]["top_terms"] == [] and predictions["unknown"]["top_terms"] == []
    assert sum(len(p["top_terms"]) == TOP_TERMS for p in predictions.values()) > len(test) // 2
    if path == "per_shard":
        # The test means something for sharding only if runners-up live in other shards than winners.
        manifest = json.loads((local_path(model_dir) / "manifest.json").read_text())
        shard_of = {c: s["shard"] for s in manifest["shards"] for c in s["class_ids"]}
        label_id = {t["label"]: t["class_id"] for p in predictions.values() for t in p["top_n"]}
        pairs = [(shard_of[label_id[lab]], shard_of[label_id[run]]) for lab, run, _ in expected.values()]
        assert any(a != b for a, b in pairs) and any(a == b for a, b in pairs)


def test_top_terms_off_adds_no_column(spark, r8, r8_models, tmp_path):
    """Off (the default), the scores and the predictions keep their columns: nothing is computed."""
    from nbknn.naive_bayes.combine import run_combine
    from nbknn.naive_bayes.outputs import IncompleteScores

    _, test = r8
    model_dir = r8_models("multinomial", 1.0, True)
    predictions, columns, run = predict(spark, model_dir, test[:20], tmp_path, "per_shard", 0)
    assert columns == ["doc_id", "class_id", "label", "probability", "true_label"]
    assert spark.read.parquet(f"{run}/scores/shard=0").columns == [
        "doc_id", "label", "best_class", "best_score", "log_sum_exp", "top_classes", "top_scores"]
    with pytest.raises(IncompleteScores, match="without the term weights top_terms needs"):
        run_combine(spark, model_dir, f"{run}/vectors", f"{run}/scores", f"{run}/predictions2", f"{run}/report2",
                    0, top_terms=3)


def test_one_class_model_lists_no_terms(spark, tmp_path):
    from helpers import train_model_in_process

    train = [{"id": f"s{i}", "label": "only", "text": t} for i, t in enumerate(["alpha beta", "beta gamma"])]
    model_dir = train_model_in_process(spark, train, tmp_path / "model", num_shards=1)
    predictions, _, _ = predict(spark, model_dir, [{"id": "x", "text": "beta beta"}], tmp_path, "single_pass", 3)
    assert predictions["x"]["label"] == "only" and predictions["x"]["top_terms"] == []
