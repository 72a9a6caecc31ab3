"""Assets that connect the DAGs: a published Naive Bayes model triggers scoring, and published
document vectors trigger the neighbour lists."""

from airflow.sdk import Asset

# Events carry {"version", "uri", "num_shards"} as extra metadata.
NB_MODEL = Asset(name="nbknn_naive_bayes_model", uri="nbknn://models/naive_bayes")
# Events carry {"uri", "documents", "dims"}: the table doc_vectors published.
DOC_VECTORS = Asset(name="nbknn_document_vectors", uri="nbknn://document_vectors")
