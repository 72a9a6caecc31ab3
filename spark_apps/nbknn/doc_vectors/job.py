"""Dense document vectors for similar-document search: TF-IDF reduced by a truncated SVD (LSA).

The vectors are the input of the kNN job: two documents are near when they use the same rare
words in similar proportions. Tokenisation is the project's tokeniser; the TF-IDF weighting and
the SVD are Spark's own (``pyspark.ml.feature`` and ``IndexedRowMatrix.computeSVD``), so the
work stays distributed: the driver holds ARPACK's basis (terms x 2 dims doubles), never the matrix.
"""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.ml.feature import IDF, CountVectorizer, Normalizer
from pyspark.mllib.linalg import Vectors as MLlibVectors
from pyspark.mllib.linalg import VectorUDT as MLlibVectorUDT
from pyspark.mllib.linalg.distributed import IndexedRowMatrix
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType

from nbknn.common import fs
from nbknn.common.errors import ConfigError
from nbknn.common.provenance import code_version
from nbknn.contract import DOC_VECTORS_JOB, SUMMARY_NAME, join_uri
from nbknn.inputs.documents import (
    InputError,
    InputSpec,
    accepted_documents,
    check_reject_fraction,
    read_counts_by_reason,
    read_documents,
    write_rejects,
)
from nbknn.inputs.tokenizer import TokenizerConfig, tokens_column

# A row of U scaled by the singular values, under its row index.
SCALED_SCHEMA = StructType(
    [StructField("index", LongType(), False), StructField("vector", ArrayType(DoubleType(), False), False)]
)
# The SVD's input: a TF-IDF row as an mllib vector, under its row index.
NUMBERED_SCHEMA = StructType(
    [
        StructField("index", LongType(), False),
        StructField("doc_id", StringType(), False),
        StructField("vector", MLlibVectorUDT(), False),
    ]
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


def numbered_rows(rows: DataFrame) -> DataFrame:
    """(index, doc_id, vector): the (doc_id, tfidf) rows numbered 0.. in doc_id order (the same
    indices every run), the vectors as mllib vectors: the input of :func:`truncated_svd`."""
    numbered = rows.orderBy("doc_id").rdd.zipWithIndex().map(
        lambda pair: (pair[1], pair[0]["doc_id"], MLlibVectors.fromML(pair[0]["tfidf"]))
    )
    return rows.sparkSession.createDataFrame(numbered, NUMBERED_SCHEMA)


def truncated_svd(
    spark: SparkSession, numbered: DataFrame, dims: int, n_docs: int, n_terms: int
) -> tuple[DataFrame, list]:
    """(id, vector) with vector = U_i * s, the document's coordinates in the top ``dims`` singular
    directions (equal to the TF-IDF row times V); also returns the singular values.

    ``numbered`` (from :func:`numbered_rows`) should be persisted: the SVD multiplies by the matrix
    once per ARPACK iteration, one Spark job each (hundreds for 100 dimensions), and builds the
    matrix's rows from that frame in the JVM every time.
    """
    if not 1 <= dims < min(n_docs, n_terms):
        raise ConfigError(
            f"dims must be >= 1 and < min(documents, terms) (dims={dims}, documents={n_docs}, terms={n_terms})"
        )
    svd = IndexedRowMatrix(numbered.select("index", "vector")).computeSVD(dims, computeU=True)
    singular_values = svd.s.toArray()
    scaled = svd.U.rows.map(lambda row: (row.index, (row.vector.toArray() * singular_values).tolist()))
    # The ids are joined back in the JVM: U's rows pass through Python once, the ids never.
    vectors = spark.createDataFrame(scaled, SCALED_SCHEMA).join(numbered.select("index", "doc_id"), "index")
    return vectors.select(F.col("doc_id").alias("id"), "vector"), [float(s) for s in singular_values]


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
    counts = read_counts_by_reason(documents)
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
    # Cached while numbering: the sort samples its input in a job of its own before it shuffles.
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    numbered = numbered_rows(rows).persist(StorageLevel.MEMORY_AND_DISK)
    numbered_count = numbered.count()
    rows.unpersist()
    if numbered_count != counts.accepted:
        raise RuntimeError(f"expected one TF-IDF row per accepted document ({counts.accepted}), got {numbered_count}")
    vectors, singular_values = truncated_svd(spark, numbered, dims, counts.accepted, n_terms)
    staging = fs.temporary_sibling(output_uri)
    vectors.write.parquet(staging)
    summary = {
        "job": DOC_VECTORS_JOB,
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
    fs.write_json_atomic(spark, join_uri(staging, SUMMARY_NAME), summary)
    fs.publish_dir(spark, staging, output_uri)
    numbered.unpersist()
    return summary
