"""The ``plan`` step of ``doc_vectors``: where the documents come from and where the vectors go."""

from __future__ import annotations

from nbknn_airflow import paths, settings
from nbknn_airflow.plans import PlanError, input_args


def plan_doc_vectors(params: dict, run_id: str) -> dict:
    """URIs and Spark arguments of a ``doc_vectors`` run; the output is confined to the data root."""
    root = settings.data_root()
    try:
        input_uri = paths.resolve_input(params["input_uri"], settings.input_roots())
        # Outputs go under the data root only, never under an extra input root.
        output_uri = paths.resolve_input(params["output_uri"], [root])
    except paths.PathError as exc:
        raise PlanError(str(exc)) from None
    if output_uri == root:
        raise PlanError("output_uri must be a folder below the data root, not the root itself")
    if output_uri == input_uri or output_uri.startswith(input_uri + "/") or input_uri.startswith(output_uri + "/"):
        raise PlanError(f"output_uri {output_uri} must not overlap input_uri {input_uri}")
    rejects = paths.rejects_dir(root, "doc_vectors", paths.run_key(run_id))
    return {
        "uris": {"input": input_uri, "output": output_uri, "rejects": rejects},
        "vectors_args": [
            *input_args(params, input_uri),
            "--output", output_uri,
            "--rejects", rejects,
            "--max-reject-fraction", str(params["max_reject_fraction"]),
            "--dims", str(params["dims"]),
            "--min-doc-freq", str(params["min_doc_freq"]),
        ],
    }
