"""Bad-input matrix: malformed inputs of the three pipelines (Naive Bayes training documents, Naive
Bayes prediction documents, kNN vectors), each fed to the job an Airflow task runs.

Every case ends one of two ways:

* **quarantined**: the job completes; each bad record is in the rejects output with its reason
  (and an excerpt of the raw record), and nothing is lost. The oracle is the test's own: each case
  names the ids it expects accepted and the rejects it expects by reason, and the records of the
  input are counted from the files the test wrote (lines split as Hadoop's line reader splits
  them, Parquet rows). The ids in the job's output must be exactly the expected ones (training's
  output holds no ids: there, the accepted ids the job counted, and its per-class document counts
  equal to a Counter of the expected labels), and the rejects on disk every other record;
* **refused**: the job stops with a clear message, as an error a retry cannot fix (and, where the
  entry script's exit code is the point, through the entry script: exit code 65, so that Airflow
  does not retry).

The reader-level cases of tests/spark/test_documents.py and test_knn_spark.py (each reason on its
own) are not repeated here; these are whole-job cases, most of them of kinds not covered there.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import train_model_in_process, write_jsonl
from reliability_support import big_document_line, run_entry_in_process, write_figures

pytestmark = [pytest.mark.reliability, pytest.mark.spark]

MIB = 1024 * 1024
GOOD_DOCS = [
    {"id": "g1", "label": "grain", "text": "wheat and corn exports rose"},
    {"id": "g2", "label": "earn", "text": "quarterly profit and dividend"},
    {"id": "g3", "label": "crude", "text": "oil prices fell on supply news"},
]
# The label of every document a case may expect accepted (the training oracle's Counter).
LABELS = {"g1": "grain", "g2": "earn", "g3": "crude", "c1": "earn"}
GOOD_IDS = frozenset({"g1", "g2", "g3"})
RESULTS: dict[str, dict] = {}


def good_lines() -> list[str]:
    return [json.dumps(doc) for doc in GOOD_DOCS]


def vector_rows(n: int, d: int, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"v{i}", "vector": [rng.uniform(-1, 1) for _ in range(d)]} for i in range(n)]


# --- how each case's input is written --------------------------------------------------------------


def write_lines(folder: Path, lines: list, name: str = "part-0.jsonl") -> Path:
    write_jsonl(folder / name, lines)
    return folder


def write_bytes(folder: Path, data: bytes, name: str = "part-0.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder


def write_parquet(folder: Path, rows: list[dict], schema) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "part-0.parquet")
    return folder


@pytest.fixture(scope="module")
def big_document(tmp_path_factory) -> Path:
    """A 50 MB single document beside two good ones (written once, read by two cases)."""
    folder = tmp_path_factory.mktemp("big")
    write_lines(folder, [big_document_line(50 * 1000 * 1000), *good_lines()[:2]])
    return folder


@dataclass
class Case:
    pipeline: str  # train | predict | knn
    write: object  # (folder, big_document) -> input folder
    accepted: frozenset | None = None  # quarantine cases: the ids expected accepted ...
    rejected: dict = field(default_factory=dict)  # ... and the records expected rejected, by reason
    refused: str | None = None  # refusal cases: the message (regex)
    format: str = "jsonl"
    options: dict = field(default_factory=dict)  # InputSpec / VectorSpec / run_knn options
    via_entry: str | None = None  # refused through this entry script: exit code 65 and the message
    rejects_from: str | None = None  # every reject must come from this input file
    expect_rejects: object = None  # (input folder) -> the expected rejects by reason (instead of ``rejected``)


def binary_file(folder: Path, _big) -> Path:
    write_lines(folder, good_lines(), "part-0.jsonl")
    rng = random.Random(9)
    return write_bytes(folder, bytes(rng.randrange(256) for _ in range(30_000)), "part-1.jsonl")


def text_records(data: bytes) -> list[bytes]:
    """The records of a JSON Lines file as the test expects them read: lines ended by "\\n", "\\r\\n"
    or "\\r" (Hadoop's line reader), less the lines that hold nothing but spaces."""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return [line for line in lines if line.strip(b" ")]


def expected_reason(record: bytes) -> str:
    """The reject reason of a record that is no JSON object, decided here without the reader."""
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        value = json.loads(text)
    except ValueError:
        return "malformed_json"
    return "not_a_json_object" if not isinstance(value, dict) else "(a JSON object)"


def binary_file_rejects(folder: Path) -> dict:
    """Every record of the binary file rejected, each for the reason its bytes call for."""
    return dict(Counter(expected_reason(record) for record in text_records((folder / "part-1.jsonl").read_bytes())))


def truncated_gzip(folder: Path, _big) -> Path:
    packed = gzip.compress(("\n".join(good_lines()) + "\n").encode() * 50)
    return write_bytes(folder, packed[: len(packed) // 2], "part-0.jsonl.gz")


def parquet_documents(rows, schema_text):
    def write(folder: Path, _big) -> Path:
        import pyarrow as pa

        fields = [pa.field(name, getattr(pa, kind)()) for name, kind in (f.split(":") for f in schema_text.split(","))]
        return write_parquet(folder, rows, pa.schema(fields))

    return write


def parquet_vectors(vectors: list, ids=None, element="float64"):
    def write(folder: Path, _big) -> Path:
        import pyarrow as pa

        rows = [{"id": ids[i] if ids else f"p{i}", "vector": v} for i, v in enumerate(vectors)]
        schema = pa.schema([pa.field("id", pa.string()), pa.field("vector", pa.list_(getattr(pa, element)()))])
        return write_parquet(folder, rows, schema)

    return write


GOOD_VECTORS = [row["vector"] for row in vector_rows(6, 4)]
NAN, INF = float("nan"), float("inf")

CASES = {
    # --- Naive Bayes training documents (nb_class_prior) ---
    "train/truncated_json": Case(
        "train", lambda f, b: write_lines(f, [*good_lines(), '{"id": "t1", "label": "earn", "text": "cut off']),
        accepted=GOOD_IDS, rejected={"malformed_json": 1}),
    "train/wrong_field_types": Case(
        "train", lambda f, b: write_lines(f, [*good_lines(), {"id": "w1", "label": {"x": 1}, "text": "t"},
                                              {"id": "w2", "label": True, "text": "t"},
                                              {"id": "w3", "label": "earn", "text": 12.5},
                                              {"id": 3.25, "label": "earn", "text": "t"}]),
        accepted=GOOD_IDS, rejected={"invalid_label_type": 2, "invalid_text_type": 1, "invalid_id_type": 1}),
    "train/missing_and_empty_fields": Case(
        "train", lambda f, b: write_lines(f, [*good_lines(), {"label": "earn", "text": "t"},
                                              {"id": "m2", "text": "t"}, {"id": "m3", "label": "earn", "text": None},
                                              {"id": "", "label": "earn", "text": "t"},
                                              {"id": "m5", "label": "   ", "text": "t"}]),
        accepted=GOOD_IDS, rejected={"missing_id": 1, "missing_label": 1, "missing_text": 1, "empty_id": 1, "empty_label": 1}),
    "train/undecodable_bytes": Case(
        "train", lambda f, b: write_bytes(f, ("\n".join(good_lines()) + "\n").encode()
                                          + b'{"id": "u1", "label": "earn", "text": "caf\xe9"}\n'
                                          + b'{"id": "u2", "label": "earn", "text": "\xff\xfe"}\n'
                                          + b'{"id": "u3", "label": "earn", "text": "cut \xe2\x82"}\n'),
        accepted=GOOD_IDS, rejected={"invalid_utf8": 3}),
    "train/binary_file_among_data": Case("train", binary_file, accepted=GOOD_IDS, rejects_from="part-1.jsonl",
                                         expect_rejects=binary_file_rejects),
    "train/control_characters": Case(
        # Escaped control characters (NUL included) are valid JSON text; a raw one inside a string is not.
        "train", lambda f, b: write_lines(f, [*good_lines(), '{"id": "c1", "label": "earn", "text": "nul \\u0000 bell \\u0007"}',
                                              '{"id": "c2", "label": "earn", "text": "raw \x01 byte"}']),
        accepted=GOOD_IDS | {"c1"}, rejected={"malformed_json": 1}),
    "train/bom_and_crlf": Case(
        "train", lambda f, b: write_bytes(f, b"\xef\xbb\xbf" + "\r\n".join(good_lines()).encode() + b"\r\n"),
        accepted=GOOD_IDS, rejected={}),
    "train/duplicate_keys_and_deep_nesting": Case(
        "train", lambda f, b: write_lines(f, [*good_lines(), '{"id": "d1", "id": "d2", "label": "earn", "text": "t"}',
                                              '{"id": "d3", "label": "earn", "text": "t", "x": ' + "[" * 20000 + "]" * 20000 + "}"]),
        accepted=GOOD_IDS, rejected={"malformed_json": 2}),
    "train/huge_numbers_as_ids": Case(
        "train", lambda f, b: write_lines(f, [*good_lines(), '{"id": 123456789012345678901234567890, "label": "earn", "text": "t"}',
                                              '{"id": 1e400, "label": "earn", "text": "t"}']),
        accepted=GOOD_IDS, rejected={"invalid_id_type": 2}),
    "train/50MB_document": Case("train", lambda f, b: b, accepted=frozenset({"g1", "g2"}),
                                rejected={"record_too_large": 1}),
    "train/50MB_document_limit_raised": Case(
        # max_record_bytes above the 20,000,000 bytes the JSON parser reads: still record_too_large.
        "train", lambda f, b: b, accepted=frozenset({"g1", "g2"}), rejected={"record_too_large": 1},
        options={"max_record_bytes": 64 * MIB}),
    "train/empty_file": Case("train", lambda f, b: write_bytes(f, b""), refused=r"the input holds no records"),
    "train/every_record_rejected": Case(
        "train", lambda f, b: write_lines(f, ["garbage", '{"id": "x"}']),
        refused=r"no record of .* was accepted; see the rejects at"),
    "train/truncated_gzip": Case(
        "train", truncated_gzip, via_entry="nb_class_prior.py",
        refused=r"nbknn: InputError: cannot read .*part-0\.jsonl\.gz: the file is corrupt or truncated"),
    # --- Naive Bayes prediction documents (nb_vectorize) ---
    "predict/parquet_wrong_schema": Case(
        "predict", parquet_documents([{"id": 1.5, "body": "t"}], "id:float64,body:string"), format="parquet",
        refused=r"does not have the configured columns \('id': expected string or integer, got double; "
                r"'text': expected string, got no such column\)"),
    "predict/no_data_files": Case(
        "predict", lambda f, b: write_bytes(write_bytes(f, b"", "_SUCCESS"), b"x", ".hidden"),
        refused=r"the input holds no records"),
    "predict/every_record_rejected": Case(
        "predict", lambda f, b: write_lines(f, ["garbage", '{"id": "x"}']),
        refused=r"no record of .* was accepted; see the rejects at"),
    "predict/optional_label_wrong_type": Case(
        "predict", lambda f, b: write_lines(f, [*good_lines(), {"id": "o1", "label": [1, 2], "text": "grain"},
                                                {"id": "o2", "text": "no label is fine"}, {"id": "o3", "text": None}]),
        accepted=GOOD_IDS | {"o2"}, rejected={"invalid_label_type": 1, "missing_text": 1}),
    "predict/corrupt_parquet_file": Case(
        "predict", lambda f, b: write_bytes(f, b"PAR1 this is not parquet", "part-0.parquet"), format="parquet",
        via_entry="nb_vectorize.py", refused=r"nbknn: InputError: cannot read .*part-0\.parquet.*corrupt or truncated"),
    # --- kNN vectors (knn_neighbors) ---
    "knn/non_finite_and_null_components": Case(
        "knn", parquet_vectors([*GOOD_VECTORS, [NAN, 0, 0, 0], [INF, 0, 0, 0], [0, -INF, 0, 0], [0, None, 0, 0], None]),
        format="parquet", accepted=frozenset(f"p{i}" for i in range(6)),
        rejected={"non_finite_component": 3, "null_component": 1, "missing_vector": 1}),
    "knn/ragged_dimensions": Case(
        "knn", parquet_vectors([*GOOD_VECTORS, [1.0, 2.0, 3.0], [1.0] * 5]), format="parquet",
        accepted=frozenset(f"p{i}" for i in range(6)), rejected={"wrong_dimension": 2}),
    "knn/non_numeric_components": Case(
        "knn", lambda f, b: write_lines(f, [*vector_rows(6, 4), '{"id": "n1", "vector": ["a", 1, 2, 3]}',
                                            '{"id": "n2", "vector": [true, 1, 2, 3]}', '{"id": "n3", "vector": [1e400, 1, 2, 3]}']),
        accepted=frozenset(f"v{i}" for i in range(6)),
        rejected={"invalid_vector_type": 2, "non_finite_component": 1}),
    "knn/k_larger_than_data": Case(
        "knn", lambda f, b: write_lines(f, vector_rows(5, 4)), options={"k": 10},
        refused=r"k must be < number of reference vectors in a self-join \(k=10, n=5\)"),
    "knn/zero_rows": Case(
        "knn", parquet_vectors([]), format="parquet", refused=r"the input holds no records"),
}


@pytest.fixture(scope="module")
def nb_model(spark, tmp_path_factory, corpus) -> str:
    return train_model_in_process(spark, corpus("reuters-r8", "train", 120), tmp_path_factory.mktemp("model"),
                                  num_shards=2)


def run_job(spark, case: Case, input_uri: str, out: Path, nb_model: str) -> tuple[dict, Path]:
    """Run the case's job; returns (record counts of its summary, rejects folder)."""
    from nbknn.inputs.documents import InputSpec
    from nbknn.inputs.vectors import VectorSpec
    from nbknn.knn.job import KnnOptions, run_knn
    from nbknn.naive_bayes.class_prior import run_class_prior
    from nbknn.naive_bayes.vectorize import run_vectorize

    rejects = out / "rejects"
    if case.pipeline == "knn":
        options = {"k": 2, "mode": "broadcast", **case.options}
        summary = run_knn(spark, VectorSpec(input_uri, format=case.format), (out / "knn").as_uri(), rejects.as_uri(),
                          KnnOptions(**options), max_reject_fraction=1.0)
        return summary["records"]["reference"], rejects
    spec = InputSpec(uri=input_uri, format=case.format, **case.options)
    if case.pipeline == "train":
        summary = run_class_prior(spark, spec, (out / "model").as_uri(), rejects.as_uri(), max_reject_fraction=1.0)
    else:
        summary = run_vectorize(spark, spec, nb_model, (out / "vectors").as_uri(), rejects.as_uri(), 1.0)
    return summary["records"], rejects


def accepted_ids_downstream(spark, case: Case, input_uri: str, out: Path) -> list[str]:
    """The ids of the accepted records as the job's output holds them. Training's output holds no
    ids, only documents per class: its ids are those the job counted (its reader's accepted ones),
    and the per-class counts it wrote must equal a Counter of the expected documents' labels."""
    if case.pipeline == "train":
        from nbknn.inputs.documents import InputSpec, accepted_documents, read_documents

        priors = json.loads((out / "model/_work/class_priors.json").read_text())["class_priors"]
        assert {label: count for _, label, count in priors} == Counter(LABELS[i] for i in case.accepted), priors
        documents = read_documents(spark, InputSpec(uri=input_uri, format=case.format, **case.options))
        return [row["doc_id"] for row in accepted_documents(documents).select("doc_id").collect()]
    if case.pipeline == "predict":
        return [row["doc_id"] for row in spark.read.parquet((out / "vectors").as_uri()).select("doc_id").collect()]
    return [row["id"] for row in spark.read.parquet((out / "knn/neighbors").as_uri()).select("id").collect()]


def records_in_input(folder: Path) -> int:
    """The records of the input the test wrote, counted without the job's reader."""
    import pyarrow.parquet as pq

    total = 0
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "_")):
            continue
        if path.suffix == ".parquet":
            total += pq.read_metadata(path).num_rows
        else:
            total += len(text_records(path.read_bytes()))
    return total


def entry_argv(case: Case, input_uri: str, out: Path, nb_model: str) -> list[str]:
    common = ["--input", input_uri, "--format", case.format, "--rejects", (out / "rejects").as_uri()]
    if case.via_entry == "nb_class_prior.py":
        return [*common, "--model-dir", (out / "model").as_uri()]
    return [*common, "--model-dir", nb_model, "--vectors", (out / "vectors").as_uri()]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_quarantined_or_refused(spark, nb_model, big_document, tmp_path, capsys, name):
    from nbknn.common.entry import run
    from nbknn.contract import NOT_RETRYABLE_EXIT_CODE

    case = CASES[name]
    folder = case.write(tmp_path / "input", big_document)
    input_uri, out = folder.as_uri(), tmp_path / "out"

    if case.via_entry:
        # The entry script's main inside the entry frame (nbknn.common.entry.run), as spark-submit runs it.
        with pytest.raises(SystemExit) as exit_info:
            run(lambda argv: run_entry_in_process(spark, case.via_entry, argv), entry_argv(case, input_uri, out, nb_model))
        message = capsys.readouterr().err.strip()
        assert exit_info.value.code == NOT_RETRYABLE_EXIT_CODE, message
        assert re.search(case.refused, message), message
        assert "\n" not in message and "Traceback" not in message, message
        RESULTS[name] = {"outcome": "refused", "exit_code": exit_info.value.code, "message": message[:200]}
        return
    if case.refused:
        with pytest.raises(Exception, match=case.refused) as raised:
            run_job(spark, case, input_uri, out, nb_model)
        if case.pipeline == "predict":
            # Refused vectors are never published, nor left behind half-written.
            left = sorted(p.name for p in out.glob("*") if p.name != "rejects")
            assert left == [], left
        from nbknn.common.errors import NotRetryableError

        RESULTS[name] = {"outcome": "refused", "error": type(raised.value).__name__,
                         "not_retryable": isinstance(raised.value, NotRetryableError),
                         "message": str(raised.value)[:200]}
        # Bad input is refused for good: a retry would read the same input.
        assert isinstance(raised.value, NotRetryableError), type(raised.value)
        return

    counts, rejects = run_job(spark, case, input_uri, out, nb_model)
    quarantined = [json.loads(line) for part in sorted(rejects.glob("part-*")) for line in part.read_text(encoding="utf-8").split("\n") if line]
    by_reason: dict[str, int] = {}
    for record in quarantined:
        by_reason[record["reason"]] = by_reason.get(record["reason"], 0) + 1
        assert record["source"].startswith("file:"), record
        assert record["raw"] is not None and len(record["raw"]) <= 4096, record["reason"]
    expected_rejects = case.expect_rejects(folder) if case.expect_rejects else case.rejected
    if case.rejects_from:
        assert sorted({record["source"].rsplit("/", 1)[-1] for record in quarantined}) == [case.rejects_from]
    assert by_reason == expected_rejects, (by_reason, expected_rejects)
    assert counts["rejected_by_reason"] == expected_rejects
    # The oracle: the records the test wrote, and the ids it expects through.
    written = records_in_input(folder)
    assert written == len(case.accepted) + sum(expected_rejects.values()), (written, case.accepted, expected_rejects)
    found = accepted_ids_downstream(spark, case, input_uri, out)
    assert sorted(found) == sorted(case.accepted), found  # each once: none lost, none duplicated
    assert counts["accepted"] == len(case.accepted) and counts["read"] == written, counts
    lost = written - len(set(found) & case.accepted) - len(quarantined)
    assert lost == 0
    RESULTS[name] = {"outcome": "quarantined", "read": counts["read"], "accepted": counts["accepted"],
                     "rejected": counts["rejected"], "reasons": by_reason, "records_lost": lost}


def test_bad_input_matrix_summary(figures):
    """One figure for the whole matrix: inputs tried, outcomes, records lost."""
    if len(RESULTS) < len(CASES):
        pytest.skip(f"{len(CASES) - len(RESULTS)} case(s) did not run (run the whole module)")
    quarantined = [r for r in RESULTS.values() if r["outcome"] == "quarantined"]
    figures.update(
        inputs_tried=len(RESULTS),
        kinds_by_pipeline={p: sum(name.startswith(p + "/") for name in RESULTS) for p in ("train", "predict", "knn")},
        quarantined_cases=len(quarantined),
        refused_cases=len(RESULTS) - len(quarantined),
        records_read=sum(r["read"] for r in quarantined),
        records_quarantined=sum(r["rejected"] for r in quarantined),
        records_lost=sum(r["records_lost"] for r in quarantined),
        refused_retryable=sorted(name for name, r in RESULTS.items() if r.get("not_retryable") is False),
    )
    # Per case: the outcome, and the reasons or the message.
    figures["cases_file"] = str(write_figures("bad_input_cases", RESULTS))
    assert figures["inputs_tried"] >= 15
    assert figures["records_lost"] == 0
    assert figures["refused_retryable"] == []
