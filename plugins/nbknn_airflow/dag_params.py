"""Params and default_args that several DAGs share, defined once (the UI trigger forms render them).

Every Param takes its JSON schema from :mod:`nbknn_airflow.param_schemas`, which the ``plan``
tasks check again before any Spark job starts.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param

from nbknn import contract
from nbknn_airflow import param_schemas
from nbknn_airflow.param_schemas import COLUMN_NAME


def schema_param(default, schemas: dict[str, dict], name: str, description: str) -> Param:
    """A Param whose validation is ``schemas[name]``."""
    return Param(default, **schemas[name], description=description)


def uri_param(default: str | None, what: str, nullable: bool = False) -> Param:
    schema = param_schemas.OPTIONAL_URI if nullable else param_schemas.URI
    return Param(
        default,
        **schema,
        description=f"{what}: a path relative to the data root, or a full URI under an allowed root.",
    )


def column_param(default: str, description: str) -> Param:
    return Param(default, **COLUMN_NAME, description=description)


def document_input_params(default_uri: str, what: str, id_note: str = "", label_note: str = "") -> dict:
    """input_uri, input_format and the id/label/text column names of a documents input."""
    return {
        "input_uri": uri_param(default_uri, what),
        "input_format": Param(
            "jsonl", **param_schemas.document_inputs()["input_format"], description="Format of the input files."
        ),
        "id_column": column_param("id", f"Name of the document id field{id_note}."),
        "label_column": column_param("label", f"Name of the class label field{label_note}."),
        "text_column": column_param("text", "Name of the document text field."),
    }


def max_reject_fraction_param() -> Param:
    return Param(
        contract.DEFAULT_MAX_REJECT_FRACTION,
        **param_schemas.MAX_REJECT_FRACTION,
        description="Fail when a larger fraction of records is rejected.",
    )


def max_record_bytes_param() -> Param:
    return Param(
        contract.DEFAULT_MAX_RECORD_BYTES,
        **param_schemas.MAX_RECORD_BYTES,
        description="Quarantine records larger than this.",
    )


def default_args(execution_timeout: timedelta) -> dict:
    """Retries for what a retry can fix (bad input fails at once: see spark_submit)."""
    return {"retries": 2, "retry_delay": timedelta(minutes=2), "execution_timeout": execution_timeout}
