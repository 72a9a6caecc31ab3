"""Input reading: every record is either accepted or quarantined with its reason; counts reconcile."""

import json

import pytest

from helpers import write_jsonl
from nbknn.inputs.documents import (
    InputError,
    InputSpec,
    TooManyRejects,
    accepted_documents,
    check_reject_fraction,
    observe_read_totals,
    observed_blank_lines,
    read_counts_from_rows,
    read_documents,
    read_totals,
    rejected_records,
    write_rejects,
)

pytestmark = pytest.mark.spark

GOOD = [
    {"id": "g1", "label": "sports", "text": "The match ended in a draw"},
    {"id": 2, "label": "politics", "text": "Parliament votes today"},  # integer id is fine
    {"id": "g3", "label": 7, "text": "Integer labels become strings"},
    {"id": "g4", "label": "sports", "text": ""},  # an empty document is a document
    {"id": "g5", "label": "culture", "text": "Ünïcödé — 東京", "extra": [1, 2]},  # extra fields ignored
]

# (raw line, expected reason)
BAD_JSON_LINES = [
    ('{"id": "b1", "label": "x", "text": "unterminated', "malformed_json"),
    ("just some words", "malformed_json"),
    ('["an", "array"]', "not_a_json_object"),
    ('"a string"', "not_a_json_object"),
    ('{"label": "x", "text": "no id"}', "missing_id"),
    ('{"id": null, "label": "x", "text": "null id"}', "missing_id"),
    ('{"id": {"nested": 1}, "label": "x", "text": "object id"}', "invalid_id_type"),
    ('{"id": 1.5, "label": "x", "text": "float id"}', "invalid_id_type"),
    ('{"id": "  ", "label": "x", "text": "blank id"}', "empty_id"),
    ('{"id": "b2", "text": "no label"}', "missing_label"),
    ('{"id": "b3", "label": ["a"], "text": "array label"}', "invalid_label_type"),
    ('{"id": "b4", "label": "", "text": "empty label"}', "empty_label"),
    ('{"id": "b5", "label": "x"}', "missing_text"),
    ('{"id": "b6", "label": "x", "text": null}', "missing_text"),
    ('{"id": "b7", "label": "x", "text": 42}', "invalid_text_type"),
    ('{"id": "b8", "label": "x", "text": {"body": "object"}}', "invalid_text_type"),
    ('{"id": "b9", "label": "x", "text": true}', "invalid_text_type"),
]


def write_mixed_jsonl(path, max_record_bytes: int):
    lines = [json.dumps(doc, ensure_ascii=False) for doc in GOOD] + [line for line, _ in BAD_JSON_LINES]
    lines.append("")  # a blank line holds no record
    lines.append(json.dumps({"id": "big", "label": "x", "text": "y" * (max_record_bytes + 10)}))
    write_jsonl(path, lines)
    with open(path, "ab") as out:
        out.write(b'{"id": "latin1", "label": "x", "text": "caf\xe9"}\n')  # undecodable bytes
    return len(lines) - 1 + 1  # records: all lines but the blank one, plus the latin-1 line


def counts_of(documents):
    return read_counts_from_rows((r["reject_reason"], r["count"]) for r in documents.groupBy("reject_reason").count().collect())


def test_jsonl_mix_keeps_the_good_and_quarantines_each_bad_kind_with_its_reason(spark, tmp_path):
    max_bytes = 4096
    records = write_mixed_jsonl(tmp_path / "in" / "docs.jsonl", max_bytes)
    spec = InputSpec(uri=(tmp_path / "in").as_uri(), max_record_bytes=max_bytes)
    documents = read_documents(spark, spec)

    accepted = {r["doc_id"]: (r["label"], r["text"]) for r in accepted_documents(documents).collect()}
    assert accepted == {
        "g1": ("sports", "The match ended in a draw"),
        "2": ("politics", "Parliament votes today"),
        "g3": ("7", "Integer labels become strings"),
        "g4": ("sports", ""),
        "g5": ("culture", "Ünïcödé — 東京"),
    }

    rejects_uri = (tmp_path / "rejects").as_uri()
    write_rejects(documents, rejects_uri)
    rejected = [json.loads(line) for f in sorted((tmp_path / "rejects").glob("part-*")) for line in open(f)]
    by_reason = sorted(r["reason"] for r in rejected)
    expected = sorted([reason for _, reason in BAD_JSON_LINES] + ["record_too_large", "invalid_utf8"])
    assert by_reason == expected
    assert all(r["source"].endswith("docs.jsonl") for r in rejected)
    latin1 = next(r for r in rejected if r["reason"] == "invalid_utf8")
    assert latin1["raw"].startswith('{"id": "latin1"') and "\ufffd" in latin1["raw"]
    too_large = next(r for r in rejected if r["reason"] == "record_too_large")
    assert len(too_large["raw"]) <= 4096

    counts = counts_of(documents)
    assert counts.read == records == len(GOOD) + len(expected)
    assert counts.accepted == len(GOOD) and counts.rejected == len(expected)
    assert counts.read == counts.accepted + counts.rejected
    assert counts.blank_lines == 1


def test_configured_column_names_are_used(spark, tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"doc": "a", "topic": "t", "body": "words here"}, {"id": "b", "label": "t", "text": "x"}])
    spec = InputSpec(uri=(tmp_path / "d.jsonl").as_uri(), id_column="doc", label_column="topic", text_column="body")
    rows = read_documents(spark, spec).collect()
    assert sorted((r["doc_id"] or "", r["reject_reason"] or "") for r in rows) == [("", "missing_id"), ("a", "")]


def test_tsv_rows_with_wrong_field_counts_or_empty_fields_are_quarantined(spark, tmp_path):
    path = tmp_path / "docs.tsv"
    path.write_text(
        "t1\tsports\tgood text\n"
        "t2\tsports\ttext\twith a tab\n"
        "t3\tonly two fields\n"
        "\tsports\tno id\n"
        "t5\t \tno label\n"
        "t6\tpolitics\t\n",
        encoding="utf-8",
    )
    documents = read_documents(spark, InputSpec(uri=path.as_uri(), format="tsv"))
    rows = sorted(
        (r["reject_reason"] or "", r["doc_id"] or "", r["text"] or "") for r in documents.collect()
    )
    assert rows == [
        ("", "t1", "good text"),
        ("", "t6", ""),
        ("empty_id", "", ""),
        ("empty_label", "", ""),
        ("wrong_field_count", "", ""),
        ("wrong_field_count", "", ""),
    ]


def test_tsv_column_order_is_configurable(spark, tmp_path):
    path = tmp_path / "docs.tsv"
    path.write_text("politics\tp1\tsome words\n", encoding="utf-8")
    spec = InputSpec(uri=path.as_uri(), format="tsv", tsv_columns=("label", "id", "text"))
    (row,) = accepted_documents(read_documents(spark, spec)).collect()
    assert (row["doc_id"], row["label"], row["text"]) == ("p1", "politics", "some words")


def test_parquet_nulls_and_empties_are_quarantined(spark, tmp_path):
    uri = (tmp_path / "docs.parquet").as_uri()
    spark.createDataFrame(
        [(1, "a", "text one"), (None, "a", "no id"), (3, None, "no label"), (4, "b", None), (5, " ", "blank")],
        "id long, label string, text string",
    ).coalesce(1).write.parquet(uri)
    documents = read_documents(spark, InputSpec(uri=uri, format="parquet"))
    reasons = sorted((r["reject_reason"] or "") for r in documents.collect())
    assert reasons == ["", "empty_label", "missing_id", "missing_label", "missing_text"]
    raw = [r["raw"] for r in documents.where("reject_reason = 'missing_text'").collect()]
    assert json.loads(raw[0]) == {"id": 4, "label": "b"}


def test_parquet_with_the_wrong_schema_is_refused_whole(spark, tmp_path):
    uri = (tmp_path / "wrong.parquet").as_uri()
    spark.createDataFrame([(1, 2.5)], "doc long, score double").write.parquet(uri)
    with pytest.raises(InputError, match=r"'id': expected string or integer, got no such column"):
        read_documents(spark, InputSpec(uri=uri, format="parquet"))
    uri2 = (tmp_path / "typed.parquet").as_uri()
    spark.createDataFrame([("a", "b", 3.0)], "id string, label string, text double").write.parquet(uri2)
    with pytest.raises(InputError, match=r"'text': expected string, got double"):
        read_documents(spark, InputSpec(uri=uri2, format="parquet"))


def test_missing_path_is_a_clear_input_error(spark, tmp_path):
    with pytest.raises(InputError, match="cannot read jsonl input at .*does-not-exist"):
        read_documents(spark, InputSpec(uri=(tmp_path / "does-not-exist").as_uri()))


def test_empty_input_and_directory_without_data_files_are_refused(spark, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "part-0.jsonl").write_text("")
    (tmp_path / "no-files").mkdir()
    (tmp_path / "no-files" / "_SUCCESS").write_text("")
    for name in ("empty", "no-files"):
        documents = read_documents(spark, InputSpec(uri=(tmp_path / name).as_uri()))
        counts = counts_of(documents)
        with pytest.raises(InputError, match="the input holds no records"):
            check_reject_fraction(counts, 0.01, "rejects")


def test_too_many_rejects_fail_with_counts_reasons_and_where_to_look(spark, tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [GOOD[0], "not json", '{"id": "x", "label": "y"}', GOOD[1]])
    counts = counts_of(read_documents(spark, InputSpec(uri=(tmp_path / "d.jsonl").as_uri())))
    check_reject_fraction(counts, 0.5, "file:///rejects/here")
    with pytest.raises(TooManyRejects, match=r"rejected 2 of 4 records \(50\.00%\).*max_reject_fraction 49\.00%.*"
                       r"malformed_json=1, missing_text=1.*file:///rejects/here"):
        check_reject_fraction(counts, 0.49, "file:///rejects/here")


def test_invalid_spec_is_refused():
    with pytest.raises(InputError, match="input format must be one of"):
        InputSpec(uri="file:///x", format="csv")
    with pytest.raises(InputError, match="lack the configured column"):
        InputSpec(uri="file:///x", format="tsv", tsv_columns=("id", "text"))


# --- blank lines and the label policy --------------------------------------------------------


def _line_counts(path) -> tuple[int, int]:
    """(lines, blank lines) of a file, counted by Python on its bytes: the independent oracle."""
    lines = open(path, "rb").read().split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline that ends the last line starts no line
    return len(lines), sum(1 for line in lines if line.strip(b" ") == b"")


@pytest.mark.parametrize("fmt", ["jsonl", "tsv"])
def test_blank_lines_are_counted_so_that_read_matches_the_line_count(spark, tmp_path, fmt):
    good = ['{"id": "a", "label": "x", "text": "one"}', '{"id": "b", "label": "y", "text": "two"}']
    if fmt == "tsv":
        good = ["a\tx\tone", "b\ty\ttwo"]
    path = tmp_path / f"docs.{fmt}"
    path.write_text("\n".join(["", good[0], "   ", "", "not a record", good[1], "", " "]) + "\n", encoding="utf-8")
    lines, blank = _line_counts(path)
    assert (lines, blank) == (8, 5)
    documents = read_documents(spark, InputSpec(uri=path.as_uri(), format=fmt))

    counts = counts_of(documents)
    assert (counts.read, counts.accepted, counts.rejected, counts.blank_lines) == (3, 2, 1, blank)
    assert counts.read + counts.blank_lines == lines
    assert counts.to_dict()["blank_lines"] == blank
    # The observed totals (the prediction path) agree, and blank lines are not quarantined.
    observed, observation = observe_read_totals(documents)
    rejected = [r["reason"] for r in rejected_records(observed).collect()]
    assert read_totals(observation) == (3, 2) and observed_blank_lines(observation) == blank
    assert len(rejected) == 1 and rejected[0] != "blank_line"


def test_labels_are_strings_or_integers_with_surrounding_whitespace_stripped(spark, tmp_path):
    lines = [
        '{"id": "i", "label": 1, "text": "integer"}',
        '{"id": "s", "label": "1", "text": "string"}',
        '{"id": "l", "label": " 1", "text": "leading space"}',
        '{"id": "t", "label": "1\\t\\n", "text": "trailing tab and newline"}',
        '{"id": "m", "label": "a b", "text": "inner space stays"}',
        '{"id": "w", "label": " \\t ", "text": "whitespace only"}',
        '{"id": "f", "label": 1.0, "text": "a float is no label"}',
        '{"id": "b", "label": true, "text": "nor is a boolean"}',
    ]
    write_jsonl(tmp_path / "d.jsonl", lines)
    rows = read_documents(spark, InputSpec(uri=(tmp_path / "d.jsonl").as_uri())).collect()
    got = {r["doc_id"] or r["raw"][8]: (r["label"], r["reject_reason"]) for r in rows}
    assert got == {
        "i": ("1", None), "s": ("1", None), "l": ("1", None), "t": ("1", None), "m": ("a b", None),
        "w": (None, "empty_label"), "f": (None, "invalid_label_type"), "b": (None, "invalid_label_type"),
    }
    (tmp_path / "d.tsv").write_text("a\t 1 \tx\nb\t\f \ty\n", encoding="utf-8")
    tsv = read_documents(spark, InputSpec(uri=(tmp_path / "d.tsv").as_uri(), format="tsv")).collect()
    assert sorted((r["label"] or "", r["reject_reason"] or "") for r in tsv) == [("", "empty_label"), ("1", "")]
    uri = (tmp_path / "d.parquet").as_uri()
    spark.createDataFrame([("p", "\t1 ", "x")], "id string, label string, text string").write.parquet(uri)
    (row,) = read_documents(spark, InputSpec(uri=uri, format="parquet")).collect()
    assert (row["label"], row["reject_reason"]) == ("1", None)


def test_labels_the_policy_changed_are_counted_in_every_format_and_summary(spark, tmp_path):
    """labels_changed counts accepted labels given as integers or with surrounding whitespace; a
    rejected record's label is not counted, nor a label kept as is. The oracle: the lines written here."""
    from helpers import predict_in_process
    from nbknn.inputs.documents import label_changes_from_rows, observed_label_changes
    from nbknn.naive_bayes.class_prior import run_class_prior

    lines = [
        '{"id": "i1", "label": 1, "text": "integer one"}',
        '{"id": "i2", "label": 2, "text": "integer two"}',
        '{"id": "s1", "label": "1", "text": "string one"}',
        '{"id": "w1", "label": " 1", "text": "leading space one"}',
        '{"id": "w2", "label": "2\\t", "text": "trailing tab two"}',
        '{"id": "w3", "label": "a b", "text": "inner space is kept"}',
        '{"id": "r1", "label": 3, "text": null}',  # rejected: its integer label is not counted
        '{"id": "r2", "label": " ", "text": "empty label"}',
    ]
    write_jsonl(tmp_path / "d" / "part-0.jsonl", lines)
    spec = InputSpec(uri=(tmp_path / "d").as_uri())
    expected = {"from_integer": 2, "whitespace_stripped": 2}

    documents = read_documents(spark, spec)
    rows = documents.groupBy("reject_reason", "label_change").count().collect()
    counts = read_counts_from_rows(((r["reject_reason"], r["count"]) for r in rows),
                                   label_changes_from_rows((r["reject_reason"], r["label_change"], r["count"]) for r in rows))
    assert (counts.accepted, counts.rejected) == (6, 2)
    assert counts.to_dict()["labels_changed"] == expected
    observed, observation = observe_read_totals(read_documents(spark, spec, labelled=False))
    observed.count()
    assert observed_label_changes(observation) == expected

    summary = run_class_prior(spark, spec, (tmp_path / "model").as_uri(), (tmp_path / "rejects").as_uri(), 0.5)
    assert summary["records"]["labels_changed"] == expected  # the training summary, hence the manifest

    (tmp_path / "d.tsv").write_text("a\t 1 \tx\nb\t1\ty\nc\tz\t\n", encoding="utf-8")
    tsv = read_documents(spark, InputSpec(uri=(tmp_path / "d.tsv").as_uri(), format="tsv"))
    assert sorted((r["doc_id"], r["label_change"]) for r in tsv.collect()) == [
        ("a", "whitespace_stripped"), ("b", None), ("c", None)]
    uri = (tmp_path / "d.parquet").as_uri()
    spark.createDataFrame([("p", 5, "x"), ("q", None, "y")], "id string, label int, text string").write.parquet(uri)
    parquet = read_documents(spark, InputSpec(uri=uri, format="parquet"), labelled=False).collect()
    assert sorted((r["doc_id"], r["label"], r["label_change"]) for r in parquet) == [
        ("p", "5", "from_integer"), ("q", None, None)]

    # Both prediction paths carry the counts of the true labels into the run summary.
    from helpers import train_model_in_process

    model = train_model_in_process(spark, [{"id": f"t{i}", "label": str(i % 2 + 1), "text": f"word{i % 2} one two"}
                                           for i in range(6)], tmp_path / "train", num_shards=2)
    docs = [json.loads(line) for line in lines[:6]]
    for path in ("single_pass", "per_shard"):
        _, run_summary, _ = predict_in_process(spark, model, docs, tmp_path / path, path=path)
        assert run_summary["counts"]["labels_changed"] == expected, path
