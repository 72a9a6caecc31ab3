"""What every DAG's ``plan`` step shares: the refusal type, the Param check, the input arguments.

A plan is plain JSON (it travels through XCom); the Spark tasks take their argument lists from it
unchanged, so what a run will do can be read in the plan task's XCom before any Spark job starts.
Param JSON schemas catch types and ranges when a run is triggered; the checks of the plans are the
ones a schema cannot express (paths confined to the data roots, a compiling token pattern,
exclusive knobs).
"""

from __future__ import annotations

from nbknn.contract import token_pattern_problem
from nbknn_airflow import param_schemas, paths


class PlanError(ValueError):
    """Parameters that the run refuses before any Spark job starts."""


class NothingToDo(Exception):
    """A scheduled run whose input is not there (yet): the DAG skips it, with this message."""


def resolve_input(uri: str, roots: list[str]) -> str:
    """``paths.resolve_input`` (a URI confined to the given roots), refusing as a PlanError."""
    try:
        return paths.resolve_input(uri, roots)
    except paths.PathError as exc:
        raise PlanError(str(exc)) from None


def check_params(params: dict, schemas: dict[str, dict], optional: tuple[str, ...] = ()) -> None:
    """The run's parameters against the DAG's Param schemas (see param_schemas), as a PlanError."""
    try:
        param_schemas.check_params(params, schemas, optional)
    except param_schemas.ParamError as exc:
        raise PlanError(str(exc)) from None


def check_token_pattern(pattern: str) -> None:
    """The tokeniser's own rules (:func:`nbknn.contract.token_pattern_problem`), refused before Spark starts."""
    problem = token_pattern_problem(pattern, "token_pattern")
    if problem:
        raise PlanError(problem)


def input_args(params: dict, input_uri: str) -> list[str]:
    return [
        "--input", input_uri,
        "--format", params["input_format"],
        "--id-column", params["id_column"],
        "--label-column", params["label_column"],
        "--text-column", params["text_column"],
        "--max-record-bytes", str(params["max_record_bytes"]),
    ]
