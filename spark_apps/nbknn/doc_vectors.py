"""Dense document vectors for similar-document search: TF-IDF reduced by a truncated SVD (LSA).

The vectors are the input of the kNN job: two documents are near when they use the same rare
words in similar proportions. Tokenisation is the project's tokeniser; the TF-IDF weighting and
the SVD are Spark's own (``pyspark.ml.feature`` and ``IndexedRowMatrix.computeSVD``), so the
work stays distributed: the driver only ever holds ``dims`` singular values.
"""

from __future__ import annotations

from pyspark.ml.feature import IDF, CountVectorizer, Normalizer
from pyspark.mllib.linalg import Vectors as MLlibVectors
from pyspark.mllib.linalg.distributed import IndexedRow, IndexedRowMatrix
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

from nbknn import fs
from nbknn.documents import (
    InputError,
    InputSpec,
    accepted_documents,
    check_reject_fraction,
    read_counts_from_rows,
    read_documents,
    write_rejects,
)
from nbknn.errors import ConfigError
from nbknn.provenance import code_version
from nbknn.tokenizer import TokenizerConfig, tokens_column

VECTOR_SCHEMA = StructType(
    [StructField("id", StringType(), False), StructField("vector", ArrayType(DoubleType(), False), False)]
)


def tfidf_rows(accepted: DataFrame, tokenizer: TokenizerConfig, min_doc_freq: int) -> tuple[DataFrame, int]:
    """(doc_id, tfidf): L2-normalised TF-IDF rows over the terms in at least ``min_doc_freq`` documents;
    also returns that vocabulary's size."""
    tokens = accepted.select("doc_id", tokens_column(accepted["text"], tokenizer).alias("tokens"))
    counts_model = CountVectorizer(inputCol="tokens", outputCol="tf", minDF=float(min_doc_freq)).fit(tokens)
    counted = counts_model.transform(tokens)
    weighted = IDF(inputCol="tf", outputCol="raw").fit(counted).transform(counted)
    normalised = Normalizer(inputCol="raw", outputCol="tfidf", p=2.0).transform(weighted)
    return normalised.select("doc_id", "tfidf"), len(counts_model.vocabulary)


def truncated_svd(spark: SparkSession, rows: DataFrame, dims: int, n_docs: int, n_terms: int) -> tuple[DataFrame, list]:
    """(id, vector) with vector = U_i * s, the document's coordinates in the top ``dims`` singular
    directions (equal to the TF-IDF row times V); also returns the singular values."""
    if not 1 <= dims < min(n_docs, n_terms):
        raise ConfigError(
            f"dims must be >= 1 and < min(documents, terms) (dims={dims}, documents={n_docs}, terms={n_terms})"
        )
    # IndexedRowMatrix wants long row indices; sorting by id first makes them the same every run.
    indexed = rows.orderBy("doc_id").rdd.zipWithIndex()
    ids = indexed.map(lambda pair: (pair[1], pair[0]["doc_id"]))
    matrix = IndexedRowMatrix(indexed.map(lambda pair: IndexedRow(pair[1], MLlibVectors.fromML(pair[0]["tfidf"]))))
    svd = matrix.computeSVD(dims, computeU=True)
    singular_values = svd.s.toArray()
    scaled = svd.U.rows.map(lambda row: (row.index, [float(x) for x in row.vector.toArray() * singular_values]))
    vectors = ids.join(scaled).map(lambda pair: (pair[1][0], pair[1][1]))
    return spark.createDataFrame(vectors, VECTOR_SCHEMA), [float(s) for s in singular_values]


def run_doc_vectors(
    spark: SparkSession,
    spec: InputSpec,
    output_uri: str,
    rejects_uri: str,
    max_reject_fraction: float,
    tokenizer: TokenizerConfig,
    dims: int,
    min_doc_freq: int = 2,
) -> dict:
    """Read documents, quarantine bad ones, publish (id, vector) Parquet at ``output_uri`` whole."""
    documents = read_documents(spark, spec, labelled=False)
    counts = read_counts_from_rows(
        (row["reject_reason"], row["count"]) for row in documents.groupBy("reject_reason").count().collect()
    )
    if counts.rejected:
        write_rejects(documents, rejects_uri)
    else:
        fs.delete(spark, rejects_uri)
    check_reject_fraction(counts, max_reject_fraction, rejects_uri)
    accepted = accepted_documents(documents)
    duplicated = accepted.groupBy("doc_id").count().where("count > 1").limit(5).collect()
    if duplicated:
        raise InputError(f"document ids must be unique; repeated: {sorted(row['doc_id'] for row in duplicated)}")

    rows, n_terms = tfidf_rows(accepted, tokenizer, min_doc_freq)
    rows = rows.cache()
    vectors, singular_values = truncated_svd(spark, rows, dims, counts.accepted, n_terms)
    staging = fs.temporary_sibling(output_uri)
    vectors.write.parquet(staging)
    summary = {
        "job": "doc_vectors",
        "input": {"uri": spec.uri, "format": spec.format},
        "records": counts.to_dict(),
        "rejects_uri": rejects_uri if counts.rejected else None,
        "tokenizer": tokenizer.to_dict(),
        "min_doc_freq": min_doc_freq,
        "terms": n_terms,
        "dims": dims,
        "singular_values_top": [round(s, 6) for s in singular_values[:10]],
        "output_uri": output_uri,
        "code_version": code_version(),
    }
    # Hidden from Spark readers of the directory (leading underscore), published with it.
    fs.write_json_atomic(spark, f"{staging}/_summary.json", summary)
    fs.publish_dir(spark, staging, output_uri)
    rows.unpersist()
    return summary
