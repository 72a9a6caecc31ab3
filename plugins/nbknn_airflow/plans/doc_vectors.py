"""The ``plan`` step of ``doc_vectors``: where the documents come from and where the vectors go."""

from __future__ import annotations

from nbknn.contract import DOC_VECTORS_JOB, RESERVED_AREAS, SUMMARY_NAME
from nbknn_airflow import param_schemas, paths, settings, storage
from nbknn_airflow.plans.base import PlanError, check_params, input_args, resolve_input


def _check_output(root: str, output_uri: str) -> None:
    """Refuse an output that would replace what another DAG owns, or a folder doc_vectors did not write."""
    area = output_uri[len(root):].strip("/").split("/", 1)[0]
    # Publishing the vectors replaces output_uri whole: inside another output's area it would delete
    # models, predictions or quarantines.
    if area in RESERVED_AREAS:
        raise PlanError(
            f"output_uri {output_uri} is inside {area}/, which the pipeline's other outputs own "
            f"(reserved: {', '.join(RESERVED_AREAS)}); publish the vectors elsewhere, e.g. under input/"
        )
    if storage.exists(output_uri):
        summary_uri = paths.join(output_uri, SUMMARY_NAME)
        job = storage.read_json(summary_uri).get("job") if storage.exists(summary_uri) else None
        if job != DOC_VECTORS_JOB:
            raise PlanError(
                f"output_uri {output_uri} exists and is not a table published by doc_vectors (no "
                f"{SUMMARY_NAME} naming it): publishing would replace it whole; choose another output_uri"
            )


def plan_doc_vectors(params: dict, run_id: str) -> dict:
    """URIs and Spark arguments of a ``doc_vectors`` run; the output is confined to the data root."""
    root = settings.data_root()
    input_uri = resolve_input(params["input_uri"], settings.input_roots())
    # Outputs go under the data root only, never under an extra input root.
    output_uri = resolve_input(params["output_uri"], [root])
    if output_uri == root:
        raise PlanError("output_uri must be a folder below the data root, not the root itself")
    if output_uri == input_uri or output_uri.startswith(input_uri + "/") or input_uri.startswith(output_uri + "/"):
        raise PlanError(f"output_uri {output_uri} must not overlap input_uri {input_uri}")
    check_params(params, param_schemas.DOC_VECTORS)
    _check_output(root, output_uri)
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
