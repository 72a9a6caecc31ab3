"""The model report of a training run without selection: full (written by term_counts) and
incremental (rewritten by merge over the merged counts), against scikit-learn.

The oracle of each class's top terms is selection_oracles.class_top_terms (scikit-learn).
"""

from __future__ import annotations

import json

import pytest
from selection_oracles import class_top_terms

from helpers import local_path, write_jsonl

pytestmark = pytest.mark.spark

ALPHA = 0.3
TOP = 10  # model_report.TOP_TERMS


def train(spark, docs: list, workdir, base_dir: str | None = None) -> str:
    """One nb_train run without selection, with the arguments its plan gives (report at ALPHA)."""
    from nbknn.inputs.documents import InputSpec
    from nbknn.inputs.tokenizer import TokenizerConfig
    from nbknn.naive_bayes.class_prior import run_class_prior
    from nbknn.naive_bayes.merge import run_merge_model
    from nbknn.naive_bayes.publish import publish_model
    from nbknn.naive_bayes.term_counts import run_term_counts

    root = workdir.as_uri()
    spec = InputSpec(uri=write_jsonl(workdir / "input" / "docs.jsonl", docs).as_uri())
    staging, version_dir = f"{root}/staging", f"{root}/model"
    count_dir = f"{staging}/_work/delta" if base_dir else staging
    run_class_prior(spark, spec, count_dir, f"{root}/rejects", max_reject_fraction=0.0)
    run_term_counts(spark, spec, count_dir, TokenizerConfig(), num_shards=1 if base_dir else 2,
                    report_alpha=None if base_dir else ALPHA)
    if base_dir:
        run_merge_model(spark, base_dir, count_dir, staging, num_shards=2, report_alpha=ALPHA)
    publish_model(spark, staging, version_dir, f"{root}/LATEST", "v1", "multinomial", ALPHA, True,
                  lineage={"mode": "incremental" if base_dir else "full"})
    return version_dir


@pytest.fixture(scope="module")
def slices(corpus):
    docs = corpus("reuters-r8", "train")[:500]
    return docs[:300], docs[300:]


def check_report(model_dir: str, docs: list) -> None:
    manifest = json.loads((local_path(model_dir) / "manifest.json").read_text())
    report = manifest["report"]
    assert report["selection"] is False and report["top_terms_alpha"] == ALPHA
    assert report["top_terms"] == class_top_terms(docs, ALPHA)
    assert all(len(terms) == TOP for terms in report["top_terms"].values())
    page = (local_path(model_dir) / report["page"]).read_text()
    assert "Selection was off" in page and "selection.png" not in page
    assert "Top terms of each class" in page and ", ".join(report["top_terms"]["earn"]) in page
    assert not (local_path(model_dir) / "report" / "selection.png").exists()
    assert "selection" not in manifest


def test_full_training_without_selection_publishes_a_report(spark, slices, tmp_path):
    first, _ = slices
    check_report(train(spark, first, tmp_path), first)


def test_incremental_training_reports_the_merged_counts(spark, slices, tmp_path):
    first, second = slices
    base = train(spark, first, tmp_path / "base")
    merged = train(spark, second, tmp_path / "merged", base_dir=base)
    check_report(merged, first + second)
