"""Reading (id, label, text) documents in JSON Lines, Parquet or TSV, with a quarantine for bad records.

Every input record ends in exactly one of two places: the accepted frame (``reject_reason`` null)
or the rejects location with a reason, so that ``read = accepted + rejected`` always holds. A blank
line of a line-based input (JSON Lines, TSV) holds no record: it is counted as ``blank_lines``, so
that ``read + blank_lines`` is the input's line count.

Labels follow one policy in every format: a string or an integer (an integer is its decimal
spelling, so ``1`` and ``"1"`` are one class), with surrounding ASCII whitespace stripped (so is
``" 1"``); nothing else is a label (``invalid_label_type``), nor is one that is empty once stripped
(``empty_label``). An accepted label that the policy changed is counted by its change
(``labels_changed``: ``from_integer``, ``whitespace_stripped``), so that a run says how many labels
are not spelled as in the input.
Whole-input problems (a missing path, no records at all, a Parquet schema without the configured
columns) are refused with an :class:`InputError` instead, since no record of them could be used.

The parsing runs in the JVM: JSON through ``try_parse_json`` (a VARIANT, whose
``schema_of_variant`` tells a string from a number or an object), TSV through ``split``, UTF-8
validity through ``is_valid_utf8`` on the raw line.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from nbknn.common import fs
from nbknn.common.errors import NotRetryableError
from nbknn.contract import DEFAULT_MAX_RECORD_BYTES, DOCUMENT_FORMATS

# The longest JSON line that is parsed, whatever max_record_bytes says: Spark's JSON parser
# (Jackson) refuses string values longer than 20,000,000 characters, and a line of at most that
# many bytes cannot hold one. A longer line is ``record_too_large``, not ``malformed_json``.
MAX_JSON_RECORD_BYTES = 20_000_000
# The part of a rejected record kept in the rejects output for a person to look at.
REJECT_RAW_CHARS = 4096

# The pseudo-reason of a blank line: such rows are neither records read nor rejects.
BLANK_LINE = "blank_line"
# What is stripped from both ends of a label (and checked for emptiness): ASCII whitespace.
LABEL_STRIP_CHARS = " \t\n\r\f\v"
# How the label policy changed an accepted label (column ``label_change``, null when kept as is).
LABEL_FROM_INTEGER = "from_integer"
LABEL_WHITESPACE_STRIPPED = "whitespace_stripped"
LABEL_CHANGES = (LABEL_FROM_INTEGER, LABEL_WHITESPACE_STRIPPED)

# Fields of a rejects location's JSON Lines records (rejected_records).
REJECTS_SCHEMA = "reason string, source string, raw string"
# Columns of the frame returned by read_documents.
DOCUMENT_COLUMNS = ("doc_id", "label", "text", "reject_reason", "source", "raw", "label_change")


class InputError(NotRetryableError, ValueError):
    """The input as a whole cannot be read (as opposed to a single bad record)."""


class TooManyRejects(NotRetryableError):
    """More records were rejected than max_reject_fraction allows."""


@dataclass(frozen=True)
class InputSpec:
    """Where the documents are and how their fields are named."""

    uri: str
    format: str = "jsonl"
    id_column: str = "id"
    label_column: str = "label"
    text_column: str = "text"
    # TSV files have no header line: the fields are, in order, these columns.
    tsv_columns: tuple[str, ...] = ("id", "label", "text")
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    def __post_init__(self) -> None:
        if self.format not in DOCUMENT_FORMATS:
            raise InputError(f"input format must be one of {DOCUMENT_FORMATS} (got {self.format!r})")
        if self.format == "tsv":
            missing = [c for c in self.required_columns(True) if c not in self.tsv_columns]
            if missing:
                raise InputError(
                    f"tsv_columns {list(self.tsv_columns)} lack the configured column(s) {missing}"
                )
        if self.max_record_bytes < 1:
            raise InputError(f"max_record_bytes must be >= 1 (got {self.max_record_bytes})")

    def required_columns(self, labelled: bool) -> list[str]:
        columns = [self.id_column, self.text_column]
        return columns + [self.label_column] if labelled else columns


def read_documents(spark: SparkSession, spec: InputSpec, labelled: bool = True) -> DataFrame:
    """All records of the input, each with its ``reject_reason`` (null when accepted).

    Columns: doc_id, label, text (null for rejected records), reject_reason, source (the file),
    raw (a readable excerpt of the record, kept for rejects), label_change (how the label policy
    changed an accepted record's label, else null). With ``labelled=False`` a label is optional: it
    is kept when the record has a usable one, and null otherwise.
    """
    readers = {"jsonl": _read_jsonl, "parquet": _read_parquet, "tsv": _read_tsv}
    try:
        frame = readers[spec.format](spark, spec, labelled)
    except AnalysisException as exc:
        raise InputError(f"cannot read {spec.format} input at {spec.uri}: {exc.getMessage()}") from None
    # A rejected record keeps no fields: nothing downstream may use half of a bad record.
    accepted = F.col("reject_reason").isNull()
    return frame.select(
        F.when(accepted, F.col("doc_id")).alias("doc_id"),
        F.when(accepted, F.col("label")).alias("label"),
        F.when(accepted, F.col("text")).alias("text"),
        "reject_reason",
        "source",
        "raw",
        F.when(accepted & F.col("label").isNotNull(), F.col("label_change")).alias("label_change"),
    )


def rows_where(frame: DataFrame, keep: Column, columns: list[Column]) -> DataFrame:
    """``columns`` of the rows of ``frame`` where ``keep`` holds, kept by a generator (each row
    becomes an array of itself or of nothing) rather than by a filter.

    On a frame fresh from :func:`read_documents` the optimizer pushes a filter below the
    projection that parses each record, and the condition then parses every record a second
    time: reading and tokenising 56 000 documents took 3.9 s with a filter and 2.8 s this way
    (2.7 s with no selection at all). A generator's output is not pushed through.
    """
    kept = F.struct(*columns)
    return frame.select(F.inline(F.when(keep, F.array(kept))))


def accepted_documents(documents: DataFrame) -> DataFrame:
    """The accepted records: doc_id, label, text."""
    return rows_where(documents, F.col("reject_reason").isNull(), [F.col("doc_id"), F.col("label"), F.col("text")])


def rejected_records(documents: DataFrame) -> DataFrame:
    """The quarantined records: reason, source, raw (blank lines are no records)."""
    return rows_where(documents, F.col("reject_reason").isNotNull() & (F.col("reject_reason") != BLANK_LINE),
                      [F.col("reject_reason").alias("reason"), F.col("source"), F.col("raw")])


def write_rejects(documents: DataFrame, uri: str) -> None:
    """Publish the quarantined records (reason, source, raw) as JSON Lines at ``uri``."""
    publish_rejects(rejected_records(documents), uri)


def publish_rejects(rejected: DataFrame, uri: str) -> None:
    """Write rejected records as JSON Lines beside ``uri``, then rename them into place.

    A reader of the rejects (a person, or a job reprocessing them) sees the previous complete set or
    the new complete set, never a half-written one; a retry replaces its own run's rejects whole.
    """
    spark = rejected.sparkSession
    temp_uri = fs.temporary_sibling(uri)
    try:
        rejected.write.json(temp_uri)
        fs.publish_dir(spark, temp_uri, uri)
    finally:
        # Gone after publishing; left over only when the write itself failed.
        fs.delete(spark, temp_uri)


def published_rejects_by_reason(spark: SparkSession, uri: str) -> dict[str, int]:
    """Records per reason in a published rejects location (a job over the rejects only)."""
    rows = spark.read.schema(REJECTS_SCHEMA).json(uri).groupBy("reason").count().collect()
    return {row["reason"]: row["count"] for row in rows}


@dataclass(frozen=True)
class ReadCounts:
    read: int
    accepted: int
    rejected_by_reason: dict[str, int]
    # Documents only (Parquet: always 0); None where they are not counted (vectors skip them).
    blank_lines: int | None = None
    # Accepted labels the label policy changed, by change (LABEL_CHANGES); None where not counted.
    labels_changed: dict[str, int] | None = None

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    def to_dict(self) -> dict:
        counts = {
            "read": self.read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
        }
        if self.blank_lines is not None:
            counts["blank_lines"] = self.blank_lines
        if self.labels_changed is not None:
            counts["labels_changed"] = {change: self.labels_changed.get(change, 0) for change in LABEL_CHANGES}
        return counts


def label_changes_from_rows(rows) -> dict[str, int]:
    """Accepted records per label change, from rows of (reject_reason, label_change, count)."""
    changes = dict.fromkeys(LABEL_CHANGES, 0)
    for reason, change, count in rows:
        if reason is None and change is not None:
            changes[change] += count
    return changes


def read_counts_from_rows(rows, labels_changed: dict[str, int] | None = None) -> ReadCounts:
    """Counts from rows of (reject_reason, count); reconciles by construction and checks it."""
    by_reason: dict[str, int] = {}
    accepted = blank = 0
    for reason, count in rows:
        if reason is None:
            accepted += count
        elif reason == BLANK_LINE:
            blank += count
        else:
            by_reason[reason] = by_reason.get(reason, 0) + count
    counts = ReadCounts(read=accepted + sum(by_reason.values()), accepted=accepted, rejected_by_reason=by_reason,
                        blank_lines=blank, labels_changed=labels_changed)
    if counts.read != counts.accepted + counts.rejected:
        raise AssertionError(f"counts do not reconcile: {counts.to_dict()}")
    return counts


def read_counts_by_reason(documents: DataFrame) -> ReadCounts:
    """Counts of read_documents' records by reject reason (one job)."""
    rows = documents.groupBy("reject_reason").count().collect()
    return read_counts_from_rows((row["reject_reason"], row["count"]) for row in rows)


def observe_read_totals(documents: DataFrame) -> tuple[DataFrame, Observation]:
    """``documents`` with its totals (records read, accepted) observed while an action runs over it.

    Lets the job that writes the accepted records count the input too, instead of a pass of its
    own; :func:`read_totals` reads them after the action. Spark merges the metrics of successful
    task attempts only, so a retried task is counted once.
    """
    observation = Observation("records")
    blank = F.col("reject_reason") == BLANK_LINE
    observed = documents.observe(
        observation,
        F.count_if(~blank | F.col("reject_reason").isNull()).alias("read"),
        F.count_if(F.col("reject_reason").isNull()).alias("accepted"),
        F.count_if(blank).alias("blank_lines"),
        *(F.count_if(F.col("label_change") == change).alias(change) for change in LABEL_CHANGES),
    )
    return observed, observation


def read_totals(observation: Observation) -> tuple[int, int]:
    """(read, accepted) that :func:`observe_read_totals` observed (call after the action)."""
    metrics = observation.get
    return int(metrics["read"] or 0), int(metrics["accepted"] or 0)


def observed_blank_lines(observation: Observation) -> int:
    """The blank lines that :func:`observe_read_totals` observed (call after the action)."""
    return int(observation.get["blank_lines"] or 0)


def observed_label_changes(observation: Observation) -> dict[str, int]:
    """The accepted labels the policy changed, by change, that :func:`observe_read_totals` observed."""
    metrics = observation.get
    return {change: int(metrics[change] or 0) for change in LABEL_CHANGES}


def check_reject_fraction(counts: ReadCounts, max_reject_fraction: float, rejects_uri: str) -> None:
    """Fail loudly when the input is empty or too much of it was rejected."""
    if counts.read == 0:
        raise InputError("the input holds no records (no data files, or only empty files)")
    fraction = counts.rejected / counts.read
    if fraction > max_reject_fraction:
        reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(counts.rejected_by_reason.items()))
        raise TooManyRejects(
            f"rejected {counts.rejected} of {counts.read} records ({fraction:.2%}), more than "
            f"max_reject_fraction {max_reject_fraction:.2%}; reasons: {reasons}; "
            f"the rejected records are at {rejects_uri}"
        )


# --- JSON Lines --------------------------------------------------------------------------------


def json_path(field: str) -> str:
    escaped = field.replace("\\", "\\\\").replace("'", "\\'")
    return f"$['{escaped}']"


def variant_field_type(variant: Column, field: str) -> Column:
    """Type name of a field of a parsed JSON object: STRING, BIGINT, OBJECT<...>, VOID (null), or null when absent."""
    return F.schema_of_variant(F.variant_get(variant, json_path(field), "variant"))


def variant_string(variant: Column, field: str) -> Column:
    return F.try_variant_get(variant, json_path(field), "string")


def _read_jsonl(spark: SparkSession, spec: InputSpec, labelled: bool) -> DataFrame:
    lines = read_lines(spark, spec)
    valid_utf8 = F.is_valid_utf8("value")
    fits = F.octet_length("value") <= json_record_limit(spec.max_record_bytes)
    parsed = lines.withColumn("_json", F.when(valid_utf8 & fits, F.try_parse_json("value")))
    fields = _json_fields(parsed, {"id": spec.id_column, "label": spec.label_column, "text": spec.text_column})
    id_type, label_type, text_type = F.col("_id_type"), F.col("_label_type"), F.col("_text_type")
    id_value, label_input, text_value = F.col("_id_input"), F.col("_label_input"), F.col("_text_input")
    label_value = F.col("_label_value")
    reason = first_reason(
        [
            (is_blank_line(), BLANK_LINE),
            (~valid_utf8, "invalid_utf8"),
            (~fits, "record_too_large"),
            (F.col("_json").isNull(), "malformed_json"),
            (~F.col("_json_type").startswith("OBJECT"), "not_a_json_object"),
            *_field_checks(
                "id", id_type, id_value, _is_string_or_integer(id_type), required=True
            ),
            *_field_checks(
                "label", label_type, label_value, _is_string_or_integer(label_type), required=labelled
            ),
            *_field_checks(
                "text", text_type, text_value, text_type == "STRING", required=True, allow_empty=True
            ),
        ]
    )
    usable_label = _is_string_or_integer(label_type) & (label_value != "")
    return fields.select(
        F.trim(id_value).alias("doc_id"),
        F.when(usable_label, label_value).alias("label"),
        text_value.alias("text"),
        reason.alias("reject_reason"),
        F.col("_source").alias("source"),
        raw_excerpt(F.col("value")).alias("raw"),
        label_change(label_type != "STRING", label_input, label_value).alias("label_change"),
    )


def _json_fields(parsed: DataFrame, columns: dict[str, str]) -> DataFrame:
    """The parsed records (``_json``) with each field's type name (``_{name}_type``) and string
    value (``_{name}_input``; the label also stripped, ``_label_value``), and the whole record's
    type (``_json_type``), each computed once per record in a projection of its own. In one
    projection the reason's CASE evaluated them again in every branch that reads them: Spark
    shares a subexpression only where it is always evaluated."""
    j = F.col("_json")
    return parsed.select(
        "value",
        "_json",
        F.col("_metadata.file_path").alias("_source"),
        F.schema_of_variant(j).alias("_json_type"),
        *(variant_field_type(j, column).alias(f"_{name}_type") for name, column in columns.items()),
        *(variant_string(j, column).alias(f"_{name}_input") for name, column in columns.items()),
        stripped_label(variant_string(j, columns["label"])).alias("_label_value"),
    )


def json_record_limit(max_record_bytes: int) -> int:
    """The longest JSON line accepted: ``max_record_bytes``, capped at what the parser can read."""
    return min(max_record_bytes, MAX_JSON_RECORD_BYTES)


def _is_string_or_integer(type_name: Column) -> Column:
    return (type_name == "STRING") | type_name.isin("BIGINT", "INT", "SMALLINT", "TINYINT")


def stripped_label(label: Column) -> Column:
    """A label as the policy reads it: surrounding ASCII whitespace stripped."""
    return F.btrim(label, F.lit(LABEL_STRIP_CHARS))


def label_change(from_integer: Column, label_input: Column, label_value: Column) -> Column:
    """How the policy changed a label: LABEL_FROM_INTEGER (the input held an integer),
    LABEL_WHITESPACE_STRIPPED (surrounding whitespace removed), else null. Only read for records
    accepted with a label (read_documents)."""
    return (F.when(from_integer, F.lit(LABEL_FROM_INTEGER))
            .when(label_input != label_value, F.lit(LABEL_WHITESPACE_STRIPPED))
            .otherwise(F.lit(None).cast("string")))


def _field_checks(
    name: str, type_name: Column, value: Column, type_ok: Column, required: bool, allow_empty: bool = False
) -> list[tuple[Column, str]]:
    """(condition, reason) pairs for one field: missing, wrong type, empty (in that order)."""
    missing = type_name.isNull() | (type_name == "VOID")
    if not required:
        # An optional field may be absent or null, but a present one must still be well typed.
        return [(~missing & ~type_ok, f"invalid_{name}_type")]
    checks = [(missing, f"missing_{name}"), (~type_ok, f"invalid_{name}_type")]
    if not allow_empty:
        checks.append((F.trim(value) == "", f"empty_{name}"))
    return checks


# --- TSV -------------------------------------------------------------------------------------


def _read_tsv(spark: SparkSession, spec: InputSpec, labelled: bool) -> DataFrame:
    lines = read_lines(spark, spec)
    fields = F.split(F.col("value"), "\t", -1)
    expected = len(spec.tsv_columns)

    def field(name: str) -> Column:
        # try_: null on a line with too few fields (wrong_field_count), which Spark may evaluate
        # before the check when it computes an expression shared by several columns once.
        return F.try_element_at(fields, F.lit(spec.tsv_columns.index(name) + 1))

    id_value, text_value = field(spec.id_column), field(spec.text_column)
    label_input = field(spec.label_column) if spec.label_column in spec.tsv_columns else F.lit(None).cast("string")
    label_value = stripped_label(label_input)
    checks = [
        (is_blank_line(), BLANK_LINE),
        (~F.is_valid_utf8("value"), "invalid_utf8"),
        (F.octet_length("value") > spec.max_record_bytes, "record_too_large"),
        (F.size(fields) != expected, "wrong_field_count"),
        (F.trim(id_value) == "", "empty_id"),
    ]
    if labelled:
        checks.append((label_value == "", "empty_label"))
    return lines.select(
        F.trim(id_value).alias("doc_id"),
        F.when(label_value != "", label_value).alias("label"),
        text_value.alias("text"),
        first_reason(checks).alias("reject_reason"),
        F.col("_metadata.file_path").alias("source"),
        raw_excerpt(F.col("value")).alias("raw"),
        label_change(F.lit(False), label_input, label_value).alias("label_change"),
    )


# --- Parquet ---------------------------------------------------------------------------------

_INTEGER_TYPES = ("bigint", "int", "smallint", "tinyint")


def _read_parquet(spark: SparkSession, spec: InputSpec, labelled: bool) -> DataFrame:
    frame = spark.read.parquet(spec.uri)
    types = dict(frame.dtypes)
    _check_parquet_schema(spec, types, labelled)
    has_label = spec.label_column in types

    def as_string(name: str) -> Column:
        return F.col(f"`{name}`").cast("string")

    id_value, text_value = as_string(spec.id_column), F.col(f"`{spec.text_column}`")
    label_input = as_string(spec.label_column) if has_label else F.lit(None).cast("string")
    label_value = stripped_label(label_input)
    from_integer = F.lit(types.get(spec.label_column) in _INTEGER_TYPES)
    record_bytes = F.octet_length(text_value)
    checks = [
        (F.col(f"`{spec.id_column}`").isNull(), "missing_id"),
        (F.trim(id_value) == "", "empty_id"),
        (text_value.isNull(), "missing_text"),
        (~F.is_valid_utf8(text_value), "invalid_utf8"),
        (record_bytes > spec.max_record_bytes, "record_too_large"),
    ]
    if labelled:
        checks += [(label_value.isNull(), "missing_label"), (label_value == "", "empty_label")]
    row_json = F.to_json(F.struct(*[F.col(f"`{c}`") for c in frame.columns]))
    return frame.select(
        F.trim(id_value).alias("doc_id"),
        F.when(label_value != "", label_value).alias("label"),
        text_value.alias("text"),
        first_reason(checks).alias("reject_reason"),
        F.col("_metadata.file_path").alias("source"),
        raw_excerpt(row_json).alias("raw"),
        label_change(from_integer, label_input, label_value).alias("label_change"),
    )


def _check_parquet_schema(spec: InputSpec, types: dict[str, str], labelled: bool) -> None:
    """A Parquet file either has usable columns for every record or for none: refuse it whole."""
    expected = {spec.id_column: "string or integer", spec.text_column: "string"}
    if labelled or spec.label_column in types:
        expected[spec.label_column] = "string or integer"
    problems = []
    for name, wanted in expected.items():
        got = types.get(name)
        ok = got == "string" or (wanted == "string or integer" and got in _INTEGER_TYPES)
        if not ok:
            problems.append(f"{name!r}: expected {wanted}, got {got or 'no such column'}")
    if problems:
        raise InputError(
            f"Parquet input at {spec.uri} does not have the configured columns ({'; '.join(problems)}); "
            f"its columns are {sorted(types)}"
        )


# --- shared ----------------------------------------------------------------------------------


def read_lines(spark: SparkSession, spec: InputSpec) -> DataFrame:
    """Every line of the input files, as raw (possibly invalid) UTF-8 strings."""
    return spark.read.text(spec.uri).select("value", "_metadata")


def is_blank_line() -> Column:
    """A line of nothing but spaces: it holds no record (JSON Lines readers skip such lines too), and
    is counted as a blank line rather than read or rejected."""
    return F.trim(F.col("value")) == ""


def first_reason(checks: list[tuple[Column, str]]) -> Column:
    """The reason of the first failing check, or null when all pass."""
    expression = F.when(checks[0][0], F.lit(checks[0][1]))
    for condition, reason in checks[1:]:
        expression = expression.when(condition, F.lit(reason))
    return expression.otherwise(F.lit(None).cast("string"))


def raw_excerpt(raw: Column) -> Column:
    """A readable prefix of the record: invalid bytes replaced, long records cut."""
    return F.substring(F.make_valid_utf8(raw), 1, REJECT_RAW_CHARS)
