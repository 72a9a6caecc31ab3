"""Document vectors: Spark's TF-IDF + distributed SVD equals the same definition in numpy."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from helpers import project_vectorizer, write_jsonl
from nbknn.common.errors import ConfigError
from nbknn.doc_vectors.job import DRIVER_SVD_MAX_NONZEROS, run_doc_vectors
from nbknn.inputs.documents import InputError, InputSpec
from nbknn.inputs.tokenizer import TokenizerConfig

pytestmark = pytest.mark.spark

DIMS = 12


def numpy_lsa(texts, dims, min_doc_freq):
    """The documented definition, independently: Spark's IDF log((n+1)/(df+1)), L2 rows, SVD."""
    X = project_vectorizer(min_df=min_doc_freq).fit_transform(texts)
    X = X.toarray().astype(float)
    df = (X > 0).sum(axis=0)
    tfidf = X * np.log((len(texts) + 1) / (df + 1))
    norms = np.linalg.norm(tfidf, axis=1, keepdims=True)
    tfidf = np.divide(tfidf, norms, out=np.zeros_like(tfidf), where=norms > 0)
    U, s, _ = np.linalg.svd(tfidf, full_matrices=False)
    return U[:, :dims] * s[:dims], s[:dims]


# Where the SVD runs: on the driver (the matrix's entries within the limit), or in the executors.
SVD_PLANS = {"driver": DRIVER_SVD_MAX_NONZEROS, "distributed": 0}


@pytest.fixture(scope="module", params=sorted(SVD_PLANS))
def r8_vectors(request, spark, corpus, tmp_path_factory):
    docs = corpus("reuters-r8", "test", 300)
    workdir = tmp_path_factory.mktemp("doc-vectors")
    source = write_jsonl(workdir / "docs.jsonl", docs)
    output = (workdir / "vectors").as_uri()
    summary = run_doc_vectors(
        spark, InputSpec(uri=source.as_uri()), output, (workdir / "rejects").as_uri(), 0.0, TokenizerConfig(), DIMS, 2,
        driver_svd_max_nonzeros=SVD_PLANS[request.param],
    )
    assert summary["svd"]["plan"] == request.param
    rows = {r["id"]: r["vector"] for r in spark.read.parquet(output).collect()}
    return docs, rows, summary, workdir


def test_singular_values_equal_numpy(r8_vectors):
    docs, _, summary, _ = r8_vectors
    _, s = numpy_lsa([d["text"] for d in docs], DIMS, 2)
    np.testing.assert_allclose(summary["singular_values_top"][:10], np.round(s[:10], 6), rtol=1e-6, atol=2e-6)


def test_distances_between_documents_equal_numpy(r8_vectors):
    """Columns of U are defined up to sign; distances between documents are not."""
    docs, rows, _, _ = r8_vectors
    expected, _ = numpy_lsa([d["text"] for d in docs], DIMS, 2)
    ours = np.array([rows[d["id"]] for d in docs])
    assert ours.shape == (len(docs), DIMS)
    np.testing.assert_allclose(pdist(ours), pdist(expected), rtol=1e-6, atol=1e-8)


def test_output_is_published_whole_with_its_summary(r8_vectors):
    docs, rows, summary, workdir = r8_vectors
    assert len(rows) == len(docs)
    assert summary["records"] == {"read": len(docs), "accepted": len(docs), "rejected": 0, "rejected_by_reason": {},
                                  "blank_lines": 0}
    published = workdir / "vectors"
    assert json.loads((published / "_summary.json").read_text())["dims"] == DIMS
    assert not [p for p in workdir.iterdir() if p.name.startswith("_tmp")]


def test_duplicate_ids_and_impossible_dims_are_refused(spark, tmp_path):
    docs = [{"id": "a", "text": "alpha beta gamma"}, {"id": "a", "text": "beta gamma delta"}, {"id": "b", "text": "gamma delta"}]
    source = write_jsonl(tmp_path / "dup.jsonl", docs).as_uri()
    with pytest.raises(InputError, match=r"document ids must be unique; repeated: \['a'\]"):
        run_doc_vectors(spark, InputSpec(uri=source), (tmp_path / "o").as_uri(), (tmp_path / "r").as_uri(), 0.0, TokenizerConfig(), 2, 1)
    source = write_jsonl(tmp_path / "few.jsonl", docs[1:]).as_uri()
    with pytest.raises(ConfigError, match=r"dims must be >= 1 and < min\(documents, terms\) \(dims=5, documents=2"):
        run_doc_vectors(spark, InputSpec(uri=source), (tmp_path / "o").as_uri(), (tmp_path / "r").as_uri(), 0.0, TokenizerConfig(), 5, 1)
