"""knn_neighbors publishes the distance by neighbour rank, numbers that scikit-learn and numpy
reproduce, and the DAG's report task draws them."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestNeighbors

from nbknn.inputs.vectors import VectorSpec
from nbknn.knn.job import KnnOptions, run_knn

pytestmark = pytest.mark.spark


def test_the_distance_picture_and_its_numbers_match_sklearn(spark, tmp_path):
    X = load_digits().data[:600].astype(np.float64)
    ids = np.arange(len(X), dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "vector": list(X)}), tmp_path / "vectors.parquet")
    out = (tmp_path / "out").as_uri()
    summary = run_knn(spark, VectorSpec((tmp_path / "vectors.parquet").as_uri(), format="parquet"), out,
                      (tmp_path / "rejects").as_uri(), KnnOptions(k=5, mode="broadcast"))

    picture = summary["distance_by_rank"]
    assert picture["ranks"] == [1, 2, 3, 4, 5]
    # The oracle: scikit-learn's brute-force distances, their per-rank quantiles by numpy (Spark's
    # percentile_approx is exact on 600 values: the smallest value with at least q of them <= it).
    distances, _ = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(X).kneighbors()
    for name, q in (("p10", 0.1), ("median", 0.5), ("p90", 0.9)):
        expected = np.quantile(distances, q, axis=0, method="inverted_cdf")
        np.testing.assert_allclose(picture[name], expected, rtol=1e-6, err_msg=name)
    assert np.all(np.diff(picture["median"]) >= 0)  # the r-th neighbour is never nearer than the (r-1)-th

    from matplotlib.image import imread

    from nbknn_airflow.report_pages import publish_knn_picture

    assert sorted(p.name for p in (tmp_path / "out" / "report").iterdir()) == ["summary.json"]  # no drawing in Spark
    assert publish_knn_picture(summary, f"{out}/report") == f"{out}/report/distance_by_rank.png"
    image = imread(io.BytesIO((tmp_path / "out" / "report" / "distance_by_rank.png").read_bytes()), format="png")
    assert image.shape[:2] == (400, 700)
    assert sorted(p.name for p in (tmp_path / "out" / "report").iterdir()) == ["distance_by_rank.png", "summary.json"]
    # A retry of the run removes the earlier attempt's picture: none is shown beside a summary it did not draw.
    run_knn(spark, VectorSpec((tmp_path / "vectors.parquet").as_uri(), format="parquet"), out,
            (tmp_path / "rejects").as_uri(), KnnOptions(k=5, mode="broadcast"))
    assert sorted(p.name for p in (tmp_path / "out" / "report").iterdir()) == ["summary.json"]
