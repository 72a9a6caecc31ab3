"""Dense document vectors for similar-document search: TF-IDF reduced by a truncated SVD (LSA).

The vectors are the input of the kNN job: two documents are near when they use the same rare
words in similar proportions. Tokenisation is the project's tokeniser; the TF-IDF weighting is
Spark's own (``pyspark.ml.feature``). The SVD runs where it is cheapest for the matrix's size:

* ``driver``: a TF-IDF matrix of at most ``DRIVER_SVD_MAX_NONZEROS`` entries is collected and
  decomposed by scipy's ARPACK in the driver process. Each ARPACK iteration is then a sparse
  product of microseconds instead of a Spark job (hundreds of them for 100 dimensions, about
  70 ms each before any work);
* ``distributed``: a larger matrix stays in the executors (``IndexedRowMatrix.computeSVD``); the
  driver holds ARPACK's basis (terms x 2 dims doubles), never the matrix.

Both compute the same decomposition (the top singular triplets of the same matrix, through its
Gramian), up to the sign of each singular vector, which no distance depends on.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from pyspark import StorageLevel
from pyspark.ml.feature import IDF, CountVectorizer, Normalizer
from pyspark.ml.linalg import SparseVector
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

#: Largest TF-IDF matrix (non-zero entries) decomposed on the driver: about 12 bytes per entry in
#: scipy's CSR form plus the pickled rows while they are collected, a few hundred MB at most.
DRIVER_SVD_MAX_NONZEROS = 5_000_000
DRIVER_SVD, DISTRIBUTED_SVD = "driver", "distributed"

# A row of U scaled by the singular values, under its row index.
SCALED_SCHEMA = StructType(
    [StructField("index", LongType(), False), StructField("vector", ArrayType(DoubleType(), False), False)]
)
# The published table: a document's coordinates under its id.
VECTORS_SCHEMA = StructType(
    [StructField("id", StringType(), False), StructField("vector", ArrayType(DoubleType(), False), False)]
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


def check_dims(dims: int, n_docs: int, n_terms: int) -> None:
    if not 1 <= dims < min(n_docs, n_terms):
        raise ConfigError(
            f"dims must be >= 1 and < min(documents, terms) (dims={dims}, documents={n_docs}, terms={n_terms})"
        )


def row_and_entry_counts(rows: DataFrame) -> tuple[int, int]:
    """(rows, stored TF-IDF entries) of the (doc_id, tfidf) rows, in one job."""
    return tuple(rows.rdd.map(lambda row: (1, row["tfidf"].indices.size)).fold((0, 0), _pair_sum))


def _pair_sum(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def tfidf_matrix(rows: list, n_terms: int) -> scipy.sparse.csr_array:
    """The collected (doc_id, tfidf) rows as one (documents, terms) CSR matrix, in row order."""
    vectors = [row["tfidf"] for row in rows]
    if not all(isinstance(vector, SparseVector) for vector in vectors):
        raise TypeError("TF-IDF rows must be sparse vectors")
    lengths = np.fromiter((vector.indices.size for vector in vectors), dtype=np.int64, count=len(vectors))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([vector.indices for vector in vectors] or [np.empty(0, np.int32)])
    values = np.concatenate([vector.values for vector in vectors] or [np.empty(0)])
    return scipy.sparse.csr_array((values, indices.astype(np.int32), indptr), shape=(len(vectors), n_terms))


def top_singular_coordinates(matrix, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(U * s, s) of the top ``dims`` singular triplets of ``matrix``, largest first.

    scipy's ARPACK on the Gramian of the smaller side, to machine precision (tol=0), from a fixed
    start vector: the same input gives the same signs every run."""
    from scipy.sparse.linalg import svds

    U, s, _ = svds(matrix, k=dims, tol=0, random_state=0)
    order = np.argsort(-s, kind="stable")
    return U[:, order] * s[order], s[order]


def driver_truncated_svd(spark: SparkSession, rows: DataFrame, dims: int, n_terms: int) -> tuple[DataFrame, list]:
    """As :func:`truncated_svd`, with the matrix collected to the driver (small matrices): (id,
    vector) rows in id order and the singular values."""
    collected = rows.orderBy("doc_id").collect()
    coordinates, singular_values = top_singular_coordinates(tfidf_matrix(collected, n_terms), dims)
    # Parallelised in contiguous slices: written in id order, each file a run of ids.
    data = [(row["doc_id"], vector) for row, vector in zip(collected, coordinates.tolist())]
    vectors = spark.createDataFrame(data, VECTORS_SCHEMA)
    return vectors, [float(s) for s in singular_values]


def truncated_svd(
    spark: SparkSession, numbered: DataFrame, dims: int, n_docs: int, n_terms: int
) -> tuple[DataFrame, list]:
    """(id, vector) with vector = U_i * s, the document's coordinates in the top ``dims`` singular
    directions (equal to the TF-IDF row times V); also returns the singular values.

    ``numbered`` (from :func:`numbered_rows`) should be persisted: the SVD multiplies by the matrix
    once per ARPACK iteration, one Spark job each (hundreds for 100 dimensions), and builds the
    matrix's rows from that frame in the JVM every time.
    """
    check_dims(dims, n_docs, n_terms)
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
    driver_svd_max_nonzeros: int = DRIVER_SVD_MAX_NONZEROS,
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
    # Cached: counted, then collected or numbered (the sort samples its input in a job of its own).
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    row_count, nonzeros = row_and_entry_counts(rows)
    if row_count != counts.accepted:
        raise RuntimeError(f"expected one TF-IDF row per accepted document ({counts.accepted}), got {row_count}")
    check_dims(dims, row_count, n_terms)
    staging = fs.temporary_sibling(output_uri)
    numbered = None
    if nonzeros <= driver_svd_max_nonzeros:
        svd_plan = DRIVER_SVD
        vectors, singular_values = driver_truncated_svd(spark, rows, dims, n_terms)
    else:
        svd_plan = DISTRIBUTED_SVD
        numbered = numbered_rows(rows).persist(StorageLevel.MEMORY_AND_DISK)
        vectors, singular_values = truncated_svd(spark, numbered, dims, counts.accepted, n_terms)
    vectors.write.parquet(staging)
    rows.unpersist()
    summary = {
        "job": DOC_VECTORS_JOB,
        "input": {"uri": spec.uri, "format": spec.format},
        "records": counts.to_dict(),
        "rejects_uri": rejects_uri if counts.rejected else None,
        "tokenizer": tokenizer.to_dict(),
        "min_doc_freq": min_doc_freq,
        "terms": n_terms,
        "dims": dims,
        "svd": {"plan": svd_plan, "tfidf_nonzeros": nonzeros, "driver_max_nonzeros": driver_svd_max_nonzeros},
        "singular_values_top": [round(s, 6) for s in singular_values[:10]],
        "output_uri": output_uri,
        "code_version": code_version(),
    }
    # Hidden from Spark readers of the directory (leading underscore), published with it.
    fs.write_json_atomic(spark, join_uri(staging, SUMMARY_NAME), summary)
    fs.publish_dir(spark, staging, output_uri)
    if numbered is not None:
        numbered.unpersist()
    return summary
