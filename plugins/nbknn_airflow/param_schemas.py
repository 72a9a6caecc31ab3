"""The JSON schema of every DAG parameter, defined once.

The DAG files build their ``Param`` objects (the UI trigger form, and the validation Airflow
applies when a run is triggered) from these schemas, and each ``plan`` task checks the run's
parameters against the same schemas again with :func:`check_params` before any Spark job starts:
the parameters of a run may reach ``plan`` without the trigger-time validation (a DAG run created
through an older DAG version, a cleared run, a direct call), and a schema alone cannot say that a
number must be finite or that a string must hold no control characters.

No Airflow import here: the plan functions and their tests use this module as plain Python.
"""

from __future__ import annotations

import math

import jsonschema

from nbknn import contract
from nbknn_airflow import paths

KIB, MIB, GIB = 1024, 1024**2, 1024**3

# URIs: a path relative to the data root, or a full URI under an allowed root (checked by paths).
MAX_URI_CHARS = 1024
# The trigger form refuses what the plan would (paths.resolve_input says why in detail): a scheme
# other than the allowed ones, a '.' or '..' path segment, whitespace and shell characters.
URI_PATTERN = (
    r"^(?!.*(^|/)[.][.]?(/|$))"
    r"((" + "|".join(paths.ALLOWED_SCHEMES) + r")://|(?![A-Za-z][A-Za-z0-9+.-]*:))"
    r"[^\s;|&`$<>\\'\"*?#{}\[\]]+$"
)
URI = {"type": "string", "minLength": 1, "maxLength": MAX_URI_CHARS, "pattern": URI_PATTERN}
OPTIONAL_URI = {"type": ["null", "string"], "maxLength": MAX_URI_CHARS, "pattern": URI_PATTERN}
# Column names: safe in Spark SQL and JSON paths, and short.
COLUMN_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"}
VERSION_NAME = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MAX_REJECT_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
# A record is tokenised whole inside one task: 16 MiB is the largest document measured to count
# within Spark's default 1 GiB local-mode memory; a 50 MB one does not.
MAX_RECORD_BYTES = {"type": "integer", "minimum": KIB, "maximum": 16 * MIB}


# nb_train's modes. ``auto``: scheduled and backfill runs fold their data interval's partition into
# the latest model (incremental); runs triggered by hand retrain on the whole input (full).
TRAIN_MODES = ("auto", "full", "incremental")


def document_inputs() -> dict[str, dict]:
    return {
        "input_uri": URI,
        "input_format": {"enum": list(contract.DOCUMENT_FORMATS)},
        "id_column": COLUMN_NAME,
        "label_column": COLUMN_NAME,
        "text_column": COLUMN_NAME,
        "max_reject_fraction": MAX_REJECT_FRACTION,
        "max_record_bytes": MAX_RECORD_BYTES,
    }


NB_TRAIN: dict[str, dict] = {
    "mode": {"enum": list(TRAIN_MODES)},
    "base_version": {"type": ["null", "string"], "pattern": VERSION_NAME},
    "partition_format": {"type": "string", "minLength": 2, "maxLength": 128, "pattern": "%"},
    **document_inputs(),
    "model_type": {"enum": list(contract.MODEL_TYPES)},
    "alpha": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e6},
    "fit_prior": {"type": "boolean"},
    "min_term_count": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    "num_shards": {"type": "integer", "minimum": 1, "maximum": 4096},
    "max_entries_per_shard": {"type": ["null", "integer"], "minimum": 1000, "maximum": 2_000_000_000},
    "token_pattern": {"type": "string", "minLength": 1, "maxLength": 512},
    "lowercase": {"type": "boolean"},
    "normalization": {"enum": list(contract.NORMALIZATIONS)},
    "selection": {"enum": list(contract.SELECTION_MODES)},
    "folds": {"type": "integer", "minimum": 2, "maximum": 20},
    "alpha_grid": {
        "type": "array", "minItems": 1, "maxItems": 50, "uniqueItems": True,
        "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e6},
    },
    "model_type_grid": {
        "type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": list(contract.MODEL_TYPES)},
    },
    "fit_prior_grid": {"type": "array", "minItems": 1, "maxItems": 2, "uniqueItems": True, "items": {"type": "boolean"}},
    "selection_metric": {"enum": list(contract.SELECTION_METRICS)},
}
# Params added after runs were created: a run without them gets the defaults (no selection).
NB_TRAIN_DEFAULTS = {
    "selection": "off",
    "folds": 5,
    "alpha_grid": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
    "model_type_grid": list(contract.MODEL_TYPES),
    "fit_prior_grid": [True, False],
    "selection_metric": "f1_macro",
}

NB_PREDICT: dict[str, dict] = {
    **document_inputs(),
    "model_version": {"type": "string", "pattern": VERSION_NAME},
    "top_n": {"type": "integer", "minimum": 0, "maximum": 100},
    "top_terms": {"type": "integer", "minimum": 0, "maximum": 100},
    "prediction_path": {"enum": list(contract.PREDICTION_PATHS)},
    "single_pass_max_bytes": {"type": "integer", "minimum": 0, "maximum": 64 * GIB},
}
# Params added after runs were created: a run without them gets the defaults.
NB_PREDICT_DEFAULTS = {
    "prediction_path": "auto", "single_pass_max_bytes": contract.DEFAULT_SINGLE_PASS_MAX_BYTES, "top_terms": 0,
}

DOC_VECTORS: dict[str, dict] = {
    **document_inputs(),
    "output_uri": URI,
    "dims": {"type": "integer", "minimum": 2, "maximum": 1024},
    "min_doc_freq": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
}

KNN_NEIGHBORS: dict[str, dict] = {
    "input_uri": URI,
    "input_format": {"enum": list(contract.VECTOR_FORMATS)},
    "id_column": COLUMN_NAME,
    "vector_column": COLUMN_NAME,
    "query_uri": OPTIONAL_URI,
    "dim": {"type": ["null", "integer"], "minimum": 1, "maximum": 1_000_000},
    "k": {"type": "integer", "minimum": 1, "maximum": 10_000},
    "metric": {"enum": list(contract.KNN_METRICS)},
    "mode": {"enum": list(contract.KNN_MODES)},
    "exclude_self": {"type": "boolean"},
    "block_bytes_budget": {"type": "integer", "minimum": contract.MIN_BLOCK_BYTES_BUDGET, "maximum": 64 * GIB},
    "broadcast_max_bytes": {"type": "integer", "minimum": 1, "maximum": 64 * GIB},
    "annoy_trees": {"type": "integer", "minimum": 1, "maximum": 1000},
    "max_reject_fraction": MAX_REJECT_FRACTION,
}

# Jinja markers: a value that reaches a templated field must never be rendered as a template.
_TEMPLATE_MARKERS = ("{{", "{%")


class ParamError(ValueError):
    """A parameter outside its schema."""


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:100]}... ({len(text)} characters)"


def check_param(name: str, value, schema: dict) -> None:
    """Refuse ``value`` unless it satisfies ``schema`` and the rules a schema cannot state."""
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        raise ParamError(f"param {name}={_shown(value)} refused: {exc.message[:300]}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamError(f"param {name}={_shown(value)} refused: must be a finite number")
    if isinstance(value, list) and any(isinstance(item, float) and not math.isfinite(item) for item in value):
        # A NaN passes every bound of a JSON schema (each comparison is false).
        raise ParamError(f"param {name}={_shown(value)} refused: every item must be a finite number")
    types = schema.get("type")
    wants_integer = types == "integer" or (isinstance(types, list) and "integer" in types)
    # JSON schema counts 5.0 as an integer; the Spark applications' argument parsers do not.
    if wants_integer and isinstance(value, float):
        raise ParamError(f"param {name}={_shown(value)} refused: must be an integer, not a float")
    if isinstance(value, str):
        if any(not ch.isprintable() for ch in value):
            raise ParamError(f"param {name}={_shown(value)} refused: holds control or non-printable characters")
        if any(marker in value for marker in _TEMPLATE_MARKERS):
            raise ParamError(f"param {name}={_shown(value)} refused: holds a template marker ('{{{{' or '{{%')")


def check_params(params: dict, schemas: dict[str, dict], optional: tuple[str, ...] = ()) -> None:
    """Check every parameter that has a schema; a missing one is refused unless ``optional``."""
    missing = sorted(name for name in schemas if name not in params and name not in optional)
    if missing:
        raise ParamError(f"params {missing} are missing")
    for name, schema in schemas.items():
        if name in params:
            check_param(name, params[name], schema)
