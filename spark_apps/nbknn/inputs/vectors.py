"""Reading (id, vector) records from Parquet or JSON Lines, with a quarantine for bad records.

The conventions are those of :mod:`nbknn.inputs.documents`: every input record ends either in the accepted
frame (``reject_reason`` null) or in the rejects location with a reason, so that
``read = accepted + rejected``; problems of the input as a whole (a missing path, a Parquet file
without usable columns, duplicate ids, an ambiguous dimension) raise :class:`InputError`.

Record checks, in order (the first failing one is the reason):

======================== =========================================================================
``invalid_utf8``         JSON Lines only: the line is not valid UTF-8
``record_too_large``     JSON Lines only: the line is longer than ``max_record_bytes`` (or than the
                         20,000,000 bytes the JSON parser reads, documents.MAX_JSON_RECORD_BYTES)
``malformed_json``       not JSON (a line holding ``NaN``/``Infinity`` tokens, which JSON does not
                         have, is reported as ``non_finite_component`` instead)
``not_a_json_object``    JSON, but not an object
``missing_id``           id absent or null
``invalid_id_type``      id neither a string nor an integer
``empty_id``             id is the empty (or blank) string
``reserved_id``          id equal to the padding sentinel of :mod:`nbknn.knn.topk` (-2**63)
``missing_vector``       vector absent or null
``invalid_vector_type``  vector not an array, or an element that is not a number (string, bool,
                         object, nested array)
``empty_vector``         vector of length 0
``null_component``       a null element
``non_finite_component`` a NaN or infinite element (including JSON numbers beyond float64 range)
``wrong_dimension``      a length other than the data set's dimension (below)
======================== =========================================================================

The data set's dimension is ``dim`` when given; otherwise the most common length among the records
that pass every other check. Two lengths sharing the top count make the dimension ambiguous: the
input is refused (pass ``dim``) rather than half of it quarantined by a coin toss.

Ids are strings or integers. They are kept as 64-bit integers (Spark ``bigint``) when every
accepted id of the data set(s) is an integer (a Parquet integer column, or JSON integers), and as
strings otherwise (integers then become their decimal text). Ids must be unique among the
accepted records of a data set: duplicates fail the run, naming a few of them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

from nbknn.contract import DEFAULT_MAX_RECORD_BYTES, VECTOR_FORMATS
from nbknn.inputs.documents import (
    InputError,
    ReadCounts,
    first_reason,
    is_blank_line,
    json_path,
    json_record_limit,
    raw_excerpt,
    read_lines,
    variant_field_type,
)

ID_TYPES = ("long", "string")
#: Spark SQL type of the id column for each id type.
SPARK_ID_TYPE = {"long": "bigint", "string": "string"}
#: The integer id that nbknn.knn.topk reserves for padding entries (PAD_ID_INT); refused as an id.
RESERVED_ID = -(2**63)
#: Duplicate ids named in the error message.
DUPLICATES_SHOWN = 5

_INTEGER_TYPES = ("bigint", "int", "smallint", "tinyint")
_VARIANT_INTEGER_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")
_NUMERIC_ELEMENT = ("float", "double", *_INTEGER_TYPES)

# Columns of read_vectors' frame (before the dimension is known).
CHECKED_COLUMNS = ("id_long", "id_string", "id_is_string", "vector", "dim", "reject_reason", "source", "raw")


class DuplicateIdError(InputError):
    """Accepted records share an id: the output (keyed by id) would be ambiguous."""


@dataclass(frozen=True)
class VectorSpec:
    """Where the vectors are and how their fields are named."""

    uri: str
    format: str = "jsonl"
    id_column: str = "id"
    vector_column: str = "vector"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    def __post_init__(self) -> None:
        if self.format not in VECTOR_FORMATS:
            raise InputError(f"vector input format must be one of {VECTOR_FORMATS} (got {self.format!r})")
        if self.max_record_bytes < 1:
            raise InputError(f"max_record_bytes must be >= 1 (got {self.max_record_bytes})")

    def to_dict(self) -> dict:
        return {
            "uri": self.uri,
            "format": self.format,
            "columns": {"id": self.id_column, "vector": self.vector_column},
        }


# --------------------------------------------------------------------------------------------
# Reading: every record with the reason of its first failing check (dimension not yet known)
# --------------------------------------------------------------------------------------------


def read_vectors(spark: SparkSession, spec: VectorSpec) -> DataFrame:
    """All records of the input with the checks that need no knowledge of the whole data set.

    Columns: id_long (bigint, for integer ids), id_string (string form of any id), id_is_string
    (whether the id was a string), vector (array<double>), dim (its length), reject_reason
    (null when every check passed; ``wrong_dimension`` is decided later by :func:`finalize`),
    source (the file), raw (a readable excerpt of the record).
    """
    readers = {"jsonl": _read_jsonl, "parquet": _read_parquet}
    try:
        return readers[spec.format](spark, spec)
    except AnalysisException as exc:
        raise InputError(f"cannot read {spec.format} input at {spec.uri}: {exc.getMessage()}") from None


def _vector_checks(vector: Column) -> list[tuple[Column, str]]:
    return [
        (F.size(vector) == 0, "empty_vector"),
        (F.exists(vector, lambda x: x.isNull()), "null_component"),
        (F.exists(vector, lambda x: F.isnan(x) | (F.abs(x) == float("inf"))), "non_finite_component"),
    ]


def _checked_frame(frame: DataFrame, id_long, id_string, id_is_string, vector, checks, raw) -> DataFrame:
    reason = first_reason(checks)
    accepted = reason.isNull()
    return frame.select(
        F.when(accepted, id_long).alias("id_long"),
        F.when(accepted, id_string).alias("id_string"),
        F.when(accepted, id_is_string).alias("id_is_string"),
        F.when(accepted, vector).alias("vector"),
        F.when(accepted, F.size(vector)).alias("dim"),
        reason.alias("reject_reason"),
        F.col("_metadata.file_path").alias("source"),
        raw_excerpt(raw).alias("raw"),
    )


def _read_jsonl(spark: SparkSession, spec: VectorSpec) -> DataFrame:
    # Blank lines hold no vector (not counted: vector summaries count records only).
    lines = read_lines(spark, spec).where(~is_blank_line())
    valid_utf8 = F.is_valid_utf8("value")
    fits = F.octet_length("value") <= json_record_limit(spec.max_record_bytes)
    parsed = lines.withColumn("_json", F.when(valid_utf8 & fits, F.try_parse_json("value")))
    j = F.col("_json")
    id_path, vector_path = json_path(spec.id_column), json_path(spec.vector_column)
    id_type = variant_field_type(j, spec.id_column)
    vector_type = variant_field_type(j, spec.vector_column)
    id_is_integer = id_type.isin(*_VARIANT_INTEGER_TYPES)
    id_string = F.try_variant_get(j, id_path, "string")
    elements = F.try_variant_get(j, vector_path, "array<variant>")
    vector = F.try_variant_get(j, vector_path, "array<double>")

    def numeric_or_null(element: Column) -> Column:
        name = F.schema_of_variant(element)
        return name.isin("VOID", "DOUBLE", "FLOAT", *_VARIANT_INTEGER_TYPES) | name.startswith("DECIMAL")

    # JSON has no NaN/Infinity, so try_parse_json refuses such lines; Jackson (the JSON data
    # source's parser) accepts them, which tells a non-finite component from garbage.
    lenient = F.from_json(
        "value",
        StructType([StructField(spec.vector_column, ArrayType(DoubleType()))]),
        {"allowNonNumericNumbers": "true", "mode": "PERMISSIVE"},
    ).getField(spec.vector_column)
    # Only lines that failed to parse are parsed a second time (CASE WHEN evaluates lazily).
    non_finite_token = F.when(
        j.isNull(), F.exists(lenient, lambda x: F.isnan(x) | (F.abs(x) == float("inf")))
    )

    missing_id = id_type.isNull() | (id_type == "VOID")
    missing_vector = vector_type.isNull() | (vector_type == "VOID")
    checks = [
        (~valid_utf8, "invalid_utf8"),
        (~fits, "record_too_large"),
        (non_finite_token, "non_finite_component"),
        (j.isNull(), "malformed_json"),
        (~F.schema_of_variant(j).startswith("OBJECT"), "not_a_json_object"),
        (missing_id, "missing_id"),
        (~(id_is_integer | (id_type == "STRING")), "invalid_id_type"),
        (F.trim(id_string) == "", "empty_id"),
        (id_is_integer & (F.try_variant_get(j, id_path, "bigint") == F.lit(RESERVED_ID)), "reserved_id"),
        (missing_vector, "missing_vector"),
        (~vector_type.startswith("ARRAY"), "invalid_vector_type"),
        (F.exists(elements, lambda e: ~numeric_or_null(e)), "invalid_vector_type"),
        *_vector_checks(vector),
    ]
    return _checked_frame(
        parsed,
        F.when(id_is_integer, F.try_variant_get(j, id_path, "bigint")),
        id_string,
        ~id_is_integer,
        vector,
        checks,
        F.col("value"),
    )


def _read_parquet(spark: SparkSession, spec: VectorSpec) -> DataFrame:
    frame = spark.read.parquet(spec.uri)
    schema = {field.name: field.dataType for field in frame.schema.fields}
    _check_parquet_schema(spec, schema)
    id_col, vector_col = F.col(f"`{spec.id_column}`"), F.col(f"`{spec.vector_column}`")
    id_is_integer = schema[spec.id_column].simpleString() in _INTEGER_TYPES
    vector = vector_col.cast("array<double>")
    checks = [
        (id_col.isNull(), "missing_id"),
        (F.trim(id_col.cast("string")) == "", "empty_id"),
        (F.lit(id_is_integer) & (id_col.cast("bigint") == F.lit(RESERVED_ID)), "reserved_id"),
        (vector_col.isNull(), "missing_vector"),
        *_vector_checks(vector),
    ]
    row_json = F.to_json(F.struct(*[F.col(f"`{c}`") for c in frame.columns]))
    return _checked_frame(
        frame,
        id_col.cast("bigint") if id_is_integer else F.lit(None).cast("bigint"),
        id_col.cast("string"),
        F.lit(not id_is_integer),
        vector,
        checks,
        row_json,
    )


def _check_parquet_schema(spec: VectorSpec, schema: dict) -> None:
    """Column types are the same for every record of a Parquet file: refuse unusable ones whole."""
    problems = []
    id_type = schema.get(spec.id_column)
    if id_type is None or id_type.simpleString() not in ("string", *_INTEGER_TYPES):
        got = id_type.simpleString() if id_type is not None else "no such column"
        problems.append(f"{spec.id_column!r}: expected string or integer, got {got}")
    vector_type = schema.get(spec.vector_column)
    ok = isinstance(vector_type, ArrayType) and (
        vector_type.elementType.simpleString() in _NUMERIC_ELEMENT
        or vector_type.elementType.simpleString().startswith("decimal")
    )
    if not ok:
        got = vector_type.simpleString() if vector_type is not None else "no such column"
        problems.append(f"{spec.vector_column!r}: expected array<float|double>, got {got}")
    if problems:
        raise InputError(
            f"Parquet input at {spec.uri} does not have the configured columns ({'; '.join(problems)}); "
            f"its columns are {sorted(schema)}"
        )


# --------------------------------------------------------------------------------------------
# The whole data set: dimension, id type, counts, final frame
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What one aggregation over :func:`read_vectors`' frame tells: (reason, dim, id_is_string) -> count."""

    rows: tuple[tuple[str | None, int | None, bool | None, int], ...]

    def dimension_counts(self) -> Counter:
        counts: Counter = Counter()
        for reason, dim, _, count in self.rows:
            if reason is None:
                counts[dim] += count
        return counts

    def has_string_ids(self) -> bool:
        return any(reason is None and is_string for reason, _, is_string, count in self.rows if count)

    def counts(self, dim: int) -> ReadCounts:
        """Counts once the dimension is fixed: records of another length become ``wrong_dimension``."""
        by_reason: dict[str, int] = {}
        accepted = 0
        for reason, d, _, count in self.rows:
            if reason is None and d != dim:
                reason = "wrong_dimension"
            if reason is None:
                accepted += count
            else:
                by_reason[reason] = by_reason.get(reason, 0) + count
        return ReadCounts(read=accepted + sum(by_reason.values()), accepted=accepted, rejected_by_reason=by_reason)


def profile(checked: DataFrame) -> Profile:
    rows = checked.groupBy("reject_reason", "dim", "id_is_string").count().collect()
    return Profile(tuple((r["reject_reason"], r["dim"], r["id_is_string"], r["count"]) for r in rows))


def choose_dimension(profile_: Profile, dim: int | None = None) -> tuple[int, str]:
    """The data set's dimension and the rule that gave it (``argument`` or ``most_common``)."""
    if dim is not None:
        if dim < 1:
            raise InputError(f"dim must be >= 1 (got {dim})")
        return int(dim), "argument"
    if not any(count for *_, count in profile_.rows):
        raise InputError("the input holds no records (no data files, or only empty files)")
    counts = profile_.dimension_counts()
    if not counts:
        raise InputError("no record passed the checks, so the data set has no dimension")
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        tied = sorted(d for d, c in ranked if c == ranked[0][1])
        raise InputError(
            f"ambiguous dimension: lengths {tied} each occur in {ranked[0][1]} records; "
            "pass the dimension explicitly (dim / --dim)"
        )
    return int(ranked[0][0]), "most_common"


def choose_id_type(*profiles: Profile) -> str:
    """``long`` when every accepted id of every data set is an integer, else ``string``."""
    return "string" if any(p.has_string_ids() for p in profiles) else "long"


def finalize(checked: DataFrame, dim: int, id_type: str) -> DataFrame:
    """Columns id (bigint or string), vector, reject_reason (now with wrong_dimension), source, raw.

    A rejected record keeps no fields: nothing downstream may use half of a bad record.
    """
    if id_type not in ID_TYPES:
        raise ValueError(f"id_type must be one of {ID_TYPES} (got {id_type!r})")
    reason = F.coalesce(
        F.col("reject_reason"), F.when(F.col("dim") != F.lit(dim), F.lit("wrong_dimension"))
    )
    accepted = reason.isNull()
    id_value = F.col("id_long") if id_type == "long" else F.col("id_string")
    return checked.select(
        F.when(accepted, id_value).alias("id"),
        F.when(accepted, F.col("vector")).alias("vector"),
        reason.alias("reject_reason"),
        "source",
        "raw",
    )


def accepted_vectors(final: DataFrame) -> DataFrame:
    """The accepted records: id, vector."""
    return final.where(F.col("reject_reason").isNull()).select("id", "vector")


def rejected_vectors(final: DataFrame, dataset: str) -> DataFrame:
    """The quarantined records: dataset (reference or queries), reason, source, raw."""
    return final.where(F.col("reject_reason").isNotNull()).select(
        F.lit(dataset).alias("dataset"), F.col("reject_reason").alias("reason"), "source", "raw"
    )


def check_unique_ids(accepted: DataFrame, what: str) -> None:
    """Fail when accepted records share an id, naming a few of the ids (smallest first)."""
    duplicates = accepted.groupBy("id").count().where(F.col("count") > 1)
    shown = duplicates.orderBy("id").limit(DUPLICATES_SHOWN).collect()
    if not shown:
        return
    total = duplicates.count()
    examples = ", ".join(f"{row['id']!r} ({row['count']} times)" for row in shown)
    raise DuplicateIdError(
        f"duplicate ids in the {what} vectors: {total} id(s) occur more than once, e.g. {examples}; "
        "ids must be unique"
    )
