"""Params and default_args that several DAGs share, defined once (the UI trigger forms render them)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param

# Column names: safe in Spark SQL and JSON paths, and short.
COLUMN_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"}
DOCUMENT_FORMATS = ["jsonl", "parquet", "tsv"]


def uri_param(default: str | None, what: str, nullable: bool = False) -> Param:
    return Param(
        default,
        type=["null", "string"] if nullable else "string",
        minLength=0 if nullable else 1,
        maxLength=1024,
        description=f"{what}: a path relative to the data root, or a full URI under an allowed root.",
    )


def column_param(default: str, description: str) -> Param:
    return Param(default, **COLUMN_NAME, description=description)


def document_input_params(default_uri: str, what: str, id_note: str = "", label_note: str = "") -> dict:
    """input_uri, input_format and the id/label/text column names of a documents input."""
    return {
        "input_uri": uri_param(default_uri, what),
        "input_format": Param("jsonl", enum=DOCUMENT_FORMATS, description="Format of the input files."),
        "id_column": column_param("id", f"Name of the document id field{id_note}."),
        "label_column": column_param("label", f"Name of the class label field{label_note}."),
        "text_column": column_param("text", "Name of the document text field."),
    }


def max_reject_fraction_param() -> Param:
    return Param(
        0.01, type="number", minimum=0, maximum=1, description="Fail when a larger fraction of records is rejected."
    )


def max_record_bytes_param() -> Param:
    return Param(
        8 * 1024 * 1024,
        type="integer",
        minimum=1024,
        maximum=256 * 1024 * 1024,
        description="Quarantine records larger than this.",
    )


def default_args(execution_timeout: timedelta) -> dict:
    """Retries for what a retry can fix (bad input fails at once: see spark_submit)."""
    return {"retries": 2, "retry_delay": timedelta(minutes=2), "execution_timeout": execution_timeout}
