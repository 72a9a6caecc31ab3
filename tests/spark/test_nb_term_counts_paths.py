"""The term counts job's three ways of building the model write the same model tables.

A (label, term) table that fits the driver is collected whole and the tables are built there. A
larger one is joined in Spark, its vocabulary numbered on the driver from the totals of one
grouping-sets job (per term and per label) when the vocabulary fits the driver, else by the
distributed range numbering, with the label statistics counted by a job of their own. All three
must give the same classes, vocabulary and dict2, row for row, with every term kept and with
rare terms dropped, and those tables must hold what a Counter over the Python reference
tokeniser counts.
"""

from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq
import pytest

from helpers import write_jsonl
from nbknn.inputs.documents import InputSpec
from nbknn.inputs.tokenizer import TokenizerConfig, tokenize
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
    """Every Parquet file of the model tables by its path below the table, read whole (row order
    kept), and the tables' completion markers (Hadoop's ``_SUCCESS``) under ``"markers"``."""
    root = Path(urlparse(model_dir).path)
    found = {
        (table, str(path.relative_to(root / table).parent)): pq.read_table(path)
        for table in TABLES
        for path in sorted((root / table).rglob("*.parquet"))
    }
    found["markers"] = sorted(
        str(path.relative_to(root)) for table in TABLES for path in (root / table).rglob("_SUCCESS")
    )
    return found


def assert_tables_hold_the_hand_counts(written: dict, docs: list[dict], min_term_count: int) -> None:
    """The written classes, vocabulary and dict2, read through their ids, against a Counter of
    (label, token) over the reference tokeniser: kept terms, their totals and document
    frequencies, each class's documents, kept tokens and entries, and every (class, term) count."""
    pairs, doc_freq = Counter(), Counter()
    for doc in docs:
        tokens = tokenize(doc["text"])
        pairs.update((doc["label"], token) for token in tokens)
        doc_freq.update(set(tokens))
    totals = Counter()
    for (_, term), n in pairs.items():
        totals[term] += n
    kept = {term for term, n in totals.items() if n >= min_term_count}
    kept_pairs = {pair: n for pair, n in pairs.items() if pair[1] in kept}

    vocabulary = written["vocabulary", "."].to_pylist()
    terms = {row["term_id"]: row["term"] for row in vocabulary}
    assert sorted(terms) == list(range(len(kept)))
    assert {row["term"]: (row["total_count"], row["doc_freq"]) for row in vocabulary} == {
        term: (totals[term], doc_freq[term]) for term in kept}
    classes = written["classes", "."].to_pylist()
    labels = {row["class_id"]: row["label"] for row in classes}
    assert [row["label"] for row in sorted(classes, key=lambda row: row["class_id"])] == sorted(labels.values())
    counted = {
        (labels[class_id], terms[term_id]): n
        for (table, _), part in written.items() if table == "term_counts"
        for class_id, term_id, n in zip(*(part.column(c).to_pylist() for c in ("class_id", "term_id", "count")))
    }
    assert counted == kept_pairs
    documents = Counter(doc["label"] for doc in docs)
    assert {row["label"]: (row["doc_count"], row["term_total"], row["entries"]) for row in classes} == {
        label: (documents[label], sum(n for (lab, _), n in kept_pairs.items() if lab == label),
                sum(1 for lab, _ in kept_pairs if lab == label))
        for label in documents}


@pytest.mark.parametrize("min_term_count", [1, 2])
def test_every_way_of_building_the_model_writes_the_hand_counted_tables(spark, corpus, tmp_path, min_term_count):
    docs = corpus("reuters-r8", "test", 400)
    spec = InputSpec(uri=write_jsonl(tmp_path / "input" / "docs.jsonl", docs).as_uri())
    ways = {
        "driver": {},
        # No (label, term) row on the driver: the vocabulary is numbered there from its totals.
        "driver_vocabulary": {"max_driver_entries": 0},
        # 50 terms: far below this vocabulary, so it is numbered by the distributed range numbering.
        "spark": {"max_driver_entries": 0, "max_driver_terms": 50},
    }
    summaries, written = {}, {}
    for way, limits in ways.items():
        model_dir = (tmp_path / way).as_uri()
        summaries[way] = count(spark, spec, model_dir, (tmp_path / f"rej-{way}").as_uri(),
                               min_term_count=min_term_count, num_shards=3, **limits)
        written[way] = tables(model_dir)
    assert summaries["driver"]["vocabulary_size"] > 50
    assert summaries["driver"]["entries"] > 400
    assert len(summaries["driver"]["shards"]) == 3
    assert written["driver"].pop("markers") == [f"{table}/_SUCCESS" for table in sorted(TABLES)]
    assert_tables_hold_the_hand_counts(written["driver"], docs, min_term_count)
    for way in ("driver_vocabulary", "spark"):
        assert summaries[way] == summaries["driver"], way
        assert written[way].pop("markers") == [f"{table}/_SUCCESS" for table in sorted(TABLES)], way
        assert written[way].keys() == written["driver"].keys(), way
        for key, table in written["driver"].items():
            other = written[way][key]
            # Same columns and types (the ways' files differ only in the nullability flag) and
            # the same rows in the same order.
            assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in other.schema], key
            assert table.to_pydict() == other.to_pydict(), (way, key)
    assert {table for table, _ in written["driver"]} == set(TABLES)


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
