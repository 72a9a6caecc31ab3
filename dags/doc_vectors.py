"""
### doc_vectors: dense document vectors (TF-IDF + truncated SVD) for similar-document search

Turns documents `(id, text)` into `(id, vector)` rows that `knn_neighbors` reads: each document's
TF-IDF weights (project tokeniser, terms in at least `min_doc_freq` documents, L2-normalised)
projected on the top `dims` singular directions of the corpus (latent semantic analysis).

| task | what it does |
|---|---|
| `plan` | validates the parameters, computes every URI of the run (see its XCom) |
| `vectors` | Spark: quarantines bad records (`rejects/doc_vectors/<run-key>/`), computes the vectors, publishes them at `output_uri` (replacing the previous table whole) with a `_summary.json` |

| `register` | emits the `nbknn_document_vectors` asset event (the table's URI): `knn_neighbors` runs on it |

By default the output is `knn_neighbors`' default input; every published table also triggers a
`knn_neighbors` run on it.
Duplicate document ids fail the run (a vector table is keyed by id).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from nbknn import contract
from nbknn_airflow import param_schemas
from nbknn_airflow.assets import DOC_VECTORS
from nbknn_airflow.dag_params import (
    default_args,
    document_input_params,
    max_record_bytes_param,
    max_reject_fraction_param,
    schema_param,
)
from nbknn_airflow.spark_submit import spark_app

PARAMS = {
    **document_input_params(
        "input/nb_predict/documents", "Documents", id_note=" (ids must be unique)", label_note=" (optional, not used)"
    ),
    "output_uri": schema_param(
        "input/knn_neighbors/vectors",
        param_schemas.DOC_VECTORS,
        "output_uri",
        "Where the (id, vector) Parquet table is published, below the data root (not under models/, "
        "predictions/, neighbors/ or rejects/; an existing folder is replaced only if doc_vectors wrote it).",
    ),
    "dims": schema_param(128, param_schemas.DOC_VECTORS, "dims", "Dimensions kept by the SVD."),
    "min_doc_freq": schema_param(2, param_schemas.DOC_VECTORS, "min_doc_freq", "Ignore terms in fewer documents."),
    "max_reject_fraction": max_reject_fraction_param(),
    "max_record_bytes": max_record_bytes_param(),
}


@dag(
    dag_id="doc_vectors",
    schedule="30 4 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["nbknn", "knn", "spark"],
    params=PARAMS,
    doc_md=__doc__,
    default_args=default_args(timedelta(hours=4)),
)
def doc_vectors():
    @task(retries=0, multiple_outputs=True, execution_timeout=timedelta(minutes=5))
    def plan(params: dict, run_id: str) -> dict:
        from nbknn_airflow.plans.doc_vectors import plan_doc_vectors

        return plan_doc_vectors(params, run_id)

    @task(outlets=[DOC_VECTORS], execution_timeout=timedelta(minutes=10))
    def register(uris: dict, outlet_events=None) -> dict:
        from nbknn_airflow import storage

        summary = storage.read_json(contract.join_uri(uris["output"], contract.SUMMARY_NAME))
        event = {"uri": uris["output"], "documents": summary["records"]["accepted"], "dims": summary["dims"]}
        outlet_events[DOC_VECTORS].extra = event
        return event

    run_plan = plan()
    run_plan >> spark_app("vectors", "make_doc_vectors.py", run_plan["vectors_args"]) >> register(run_plan["uris"])


doc_vectors()
