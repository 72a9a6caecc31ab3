"""
### doc_vectors: dense document vectors (TF-IDF + truncated SVD) for similar-document search

Turns documents `(id, text)` into `(id, vector)` rows that `knn_neighbors` reads: each document's
TF-IDF weights (project tokeniser, terms in at least `min_doc_freq` documents, L2-normalised)
projected on the top `dims` singular directions of the corpus (latent semantic analysis).

| task | what it does |
|---|---|
| `plan` | validates the parameters, computes every URI of the run (see its XCom) |
| `vectors` | Spark: quarantines bad records (`rejects/doc_vectors/<run-key>/`), computes the vectors, publishes them at `output_uri` (replacing the previous table whole) with a `_summary.json` |

By default the output is `knn_neighbors`' default input, so the two DAGs chain without typing.
Duplicate document ids fail the run (a vector table is keyed by id).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from nbknn_airflow.spark_submit import spark_app

COLUMN_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"}

PARAMS = {
    "input_uri": Param(
        "input/nb_predict/documents",
        type="string",
        minLength=1,
        maxLength=1024,
        description="Documents: a path relative to the data root, or a full URI under an allowed root.",
    ),
    "input_format": Param("jsonl", enum=["jsonl", "parquet", "tsv"], description="Format of the input files."),
    "id_column": Param("id", **COLUMN_NAME, description="Name of the document id field (ids must be unique)."),
    "label_column": Param("label", **COLUMN_NAME, description="Name of the label field (optional, not used)."),
    "text_column": Param("text", **COLUMN_NAME, description="Name of the document text field."),
    "output_uri": Param(
        "input/knn_neighbors/vectors",
        type="string",
        minLength=1,
        maxLength=1024,
        description="Where the (id, vector) Parquet table is published, below the data root.",
    ),
    "dims": Param(128, type="integer", minimum=2, maximum=1024, description="Dimensions kept by the SVD."),
    "min_doc_freq": Param(
        2, type="integer", minimum=1, maximum=1_000_000, description="Ignore terms in fewer documents."
    ),
    "max_reject_fraction": Param(
        0.01, type="number", minimum=0, maximum=1, description="Fail when a larger fraction of records is rejected."
    ),
    "max_record_bytes": Param(
        8 * 1024 * 1024,
        type="integer",
        minimum=1024,
        maximum=256 * 1024 * 1024,
        description="Quarantine records larger than this.",
    ),
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
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(hours=4),
    },
)
def doc_vectors():
    @task(retries=0, multiple_outputs=True, execution_timeout=timedelta(minutes=5))
    def plan(params: dict, run_id: str) -> dict:
        from nbknn_airflow.vectors_plan import plan_doc_vectors

        return plan_doc_vectors(params, run_id)

    run_plan = plan()
    run_plan >> spark_app("vectors", "make_doc_vectors.py", run_plan["vectors_args"])


doc_vectors()
