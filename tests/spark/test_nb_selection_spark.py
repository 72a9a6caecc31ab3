"""The selection job on Spark against the numpy selection and scikit-learn on Reuters R52.

The job vectorises, counts per fold and scores in Spark tasks; the references are the numpy
module fed with CountVectorizer's matrix (itself checked against GridSearchCV in
tests/unit/test_nb_selection.py) and GridSearchCV on a PredefinedSplit of the same folds.
"""

import numpy as np
import pytest
from pyspark.sql import functions as F
from selection_oracles import ALPHAS, FIT_PRIORS, FOLDS, MODEL_TYPES, check_equals_grid_search, corpus_matrix, our_table

from helpers import write_jsonl
from nbknn import contract
from nbknn.common.errors import ConfigError
from nbknn.inputs.documents import InputError, InputSpec
from nbknn.inputs.tokenizer import TokenizerConfig
from nbknn.naive_bayes.class_prior import run_class_prior
from nbknn.naive_bayes.select_job import fold_column, run_selection
from nbknn.naive_bayes.term_counts import run_term_counts

pytestmark = pytest.mark.spark

def stage_model(spark, docs, workdir):
    """Count a staged model (class prior and term counts jobs) as nb_train does before publishing."""
    input_path = write_jsonl(workdir / "input" / "docs.jsonl", docs)
    staging = f"{workdir.as_uri()}/staging"
    spec = InputSpec(uri=input_path.as_uri())
    run_class_prior(spark, spec, staging, f"{workdir.as_uri()}/rejects", max_reject_fraction=0.0)
    run_term_counts(spark, spec, staging, TokenizerConfig(), num_shards=2)
    return spec, staging


@pytest.fixture(scope="module")
def r52_selection(spark, corpus, tmp_path_factory):
    docs = corpus("reuters-r52", "train")
    spec, staging = stage_model(spark, docs, tmp_path_factory.mktemp("r52-selection"))
    summary = run_selection(spark, spec, staging, FOLDS, ALPHAS, MODEL_TYPES, FIT_PRIORS, "f1_macro")
    return docs, spec, staging, summary


def test_every_fold_score_equals_numpy_selection(r52_selection):
    docs, _, _, summary = r52_selection
    folds, X, y = corpus_matrix(docs)
    expected = our_table(folds, X, y, "f1_macro", alphas=ALPHAS)
    assert summary["fold_documents"] == np.bincount(folds, minlength=FOLDS).tolist()
    assert summary["best_index"] == expected["best_index"]
    for row, want in zip(summary["points"], expected["points"], strict=True):
        assert (row["model_type"], row["alpha"], row["fit_prior"]) == (want["model_type"], want["alpha"], want["fit_prior"])
        for metric in contract.SELECTION_METRICS:
            np.testing.assert_allclose(row[f"fold_{metric}"], want[f"fold_{metric}"], rtol=0, atol=1e-12)


def test_scores_and_choice_equal_grid_search(r52_selection):
    docs, _, _, summary = r52_selection
    folds, X, y = corpus_matrix(docs)
    check_equals_grid_search(summary, folds, X, y)


def test_fold_column_equals_contract_fold_of(spark):
    ids = ["doc-1", "r52-train-000017", "ünïcödé-ид", "42", "", "a" * 300]
    frame = spark.createDataFrame([(i,) for i in ids], "doc_id string")
    got = {row["doc_id"]: row["fold"] for row in frame.select("doc_id", fold_column(F.col("doc_id"), 7).alias("fold")).collect()}
    assert got == {i: contract.fold_of(i, 7) for i in ids}


def test_input_changed_since_counting_is_refused(spark, corpus, tmp_path):
    docs = corpus("reuters-r8", "train", limit=200)
    spec, staging = stage_model(spark, docs, tmp_path)
    write_jsonl(tmp_path / "input" / "docs.jsonl", docs[:150])
    with pytest.raises(InputError, match="do not add up"):
        run_selection(spark, spec, staging, 3, [1.0], ["multinomial"], [True], "accuracy")
    with pytest.raises(ConfigError, match="at least 2 folds"):
        run_selection(spark, spec, staging, 1, [1.0], ["multinomial"], [True], "accuracy")


def test_model_report_holds_the_picture_page_and_top_terms(r52_selection):
    """The report in the staged model's report/ directory; the top terms are scikit-learn's class
    against rest log-probability ratios at the chosen alpha (selection_oracles.class_top_terms)."""
    from pathlib import Path
    from urllib.parse import urlparse

    from selection_oracles import class_top_terms

    docs, _, staging, summary = r52_selection
    report = Path(urlparse(staging).path) / "report"
    assert (report / "selection.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (report / "report.html").read_text()
    assert "Top terms of each class" in page and "Selection was off" not in page
    assert summary["report"]["page"] == "report/report.html" and summary["report"]["selection"] is True
    assert summary["report"]["top_terms"] == class_top_terms(docs, summary["best"]["alpha"])
