"""Assets that connect the DAGs: a published Naive Bayes model triggers scoring."""

from airflow.sdk import Asset

# Events carry {"version", "uri", "num_shards"} as extra metadata.
NB_MODEL = Asset(name="nbknn_naive_bayes_model", uri="nbknn://models/naive_bayes")
