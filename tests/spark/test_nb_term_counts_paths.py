"""The term counts job's two ways of numbering the vocabulary write the same model tables.

A vocabulary that fits the driver is numbered there from the totals of one grouping-sets job
(per term and per label); a larger one by the distributed range numbering, with the label
statistics counted by a job of their own. Both must give the same classes, vocabulary and dict2,
row for row, with every term kept and with rare terms dropped.
"""

from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq
import pytest

from helpers import write_jsonl
from nbknn.inputs.documents import InputSpec
from nbknn.inputs.tokenizer import TokenizerConfig
from nbknn.naive_bayes.class_prior import run_class_prior
from nbknn.naive_bayes.term_counts import class_term_counts, label_term_stats, run_term_counts, tokenized_documents
from nbknn.naive_bayes.vocabulary import term_and_label_totals, vocabulary_counts

pytestmark = pytest.mark.spark

TABLES = ("classes", "vocabulary", "term_counts")


def count(spark, spec: InputSpec, model_dir: str, rejects: str, **kwargs) -> dict:
    run_class_prior(spark, spec, model_dir, rejects, max_reject_fraction=0.0)
    summary = run_term_counts(spark, spec, model_dir, TokenizerConfig(), **kwargs)
    summary.pop("code_version")
    return summary


def tables(model_dir: str) -> dict:
    """Every Parquet file of the model tables by its path below the table, read whole (row order kept)."""
    root = Path(urlparse(model_dir).path)
    return {
        (table, str(path.relative_to(root / table).parent)): pq.read_table(path)
        for table in TABLES
        for path in sorted((root / table).rglob("*.parquet"))
    }


@pytest.mark.parametrize("min_term_count", [1, 2])
def test_driver_and_distributed_numbering_write_the_same_tables(spark, corpus, tmp_path, min_term_count):
    docs = corpus("reuters-r8", "test", 400)
    spec = InputSpec(uri=write_jsonl(tmp_path / "input" / "docs.jsonl", docs).as_uri())
    on_driver = count(spark, spec, (tmp_path / "driver").as_uri(), (tmp_path / "rej1").as_uri(),
                      min_term_count=min_term_count, num_shards=3)
    # 50 terms: far below this vocabulary, so it is numbered by the distributed range numbering.
    distributed = count(spark, spec, (tmp_path / "spark").as_uri(), (tmp_path / "rej2").as_uri(),
                        min_term_count=min_term_count, num_shards=3, max_driver_terms=50)
    assert on_driver["vocabulary_size"] > 50
    assert on_driver == distributed
    driver_tables, spark_tables = tables((tmp_path / "driver").as_uri()), tables((tmp_path / "spark").as_uri())
    assert driver_tables.keys() == spark_tables.keys()
    assert {table for table, _ in driver_tables} == set(TABLES)
    for key, table in driver_tables.items():
        other = spark_tables[key]
        # Same columns and types (the two paths' files differ only in the nullability flag) and
        # the same rows in the same order.
        assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in other.schema], key
        assert table.to_pydict() == other.to_pydict(), key


def test_term_and_label_totals_equal_their_separate_aggregations(spark, corpus):
    docs = corpus("reuters-r8", "test", 300)
    frame = spark.createDataFrame([(d["label"], d["text"]) for d in docs], "label string, text string")
    class_terms = class_term_counts(tokenized_documents(frame, TokenizerConfig())).cache()
    try:
        labels = len({d["label"] for d in docs})
        expected_terms = vocabulary_counts(class_terms).toArrow().sort_by("term").to_pylist()
        terms, label_stats = term_and_label_totals(class_terms, len(expected_terms), labels)
        assert terms.sort_by("term").to_pylist() == expected_terms
        assert label_stats == label_term_stats(class_terms)
        # One row more than the terms and labels allow: refused, nothing numbered on the driver.
        assert term_and_label_totals(class_terms, len(expected_terms) - 1, labels) is None
    finally:
        class_terms.unpersist()
