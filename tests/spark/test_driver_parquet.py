"""Small Parquet tables read and written by the driver (nbknn.common.driver_parquet) hold what
Spark's own read and write of the same directory hold, through both of the file layer's branches:
file:// URIs (Python's file API) and a path without a scheme (Hadoop's FileSystem, as hdfs://)."""

from __future__ import annotations

import pyarrow as pa
import pytest

pytestmark = pytest.mark.spark

ROWS = [(shard, class_id, term_id, class_id * 1000 + term_id) for shard in range(3) for class_id in range(4)
        for term_id in range(50)]


def as_uri(path, branch: str) -> str:
    return path.as_uri() if branch == "file" else str(path)


@pytest.mark.parametrize("branch", ["file", "hadoop"])
def test_a_partitioned_spark_table_reads_the_same_on_the_driver(spark, tmp_path, branch):
    from nbknn.common.driver_parquet import read_driver_table

    uri = as_uri(tmp_path / "term_counts", branch)
    frame = spark.createDataFrame(ROWS, "shard int, class_id int, term_id int, count long")
    frame.repartition(3, "shard").write.partitionBy("shard").parquet(uri)
    # What a killed writer leaves beside the data is skipped, as Spark skips it.
    (tmp_path / "term_counts" / "_temporary" / "0").mkdir(parents=True)
    (tmp_path / "term_counts" / "_temporary" / "0" / "part-99999.parquet").write_bytes(b"not parquet")
    (tmp_path / "term_counts" / "shard=1" / ".part-99999.parquet").write_bytes(b"not parquet")
    columns = ["class_id", "term_id", "count"]
    read = read_driver_table(spark, uri, columns)
    assert read.column_names == columns
    assert sorted(zip(*read.to_pydict().values())) == sorted(row[1:] for row in ROWS)
    assert sorted(tuple(row) for row in spark.read.parquet(uri).select(*columns).collect()) == sorted(
        zip(*read.to_pydict().values()))
    total = sum(path.stat().st_size for path in (tmp_path / "term_counts").rglob("part-*.parquet")
                if "_temporary" not in path.parts and not path.name.startswith("."))
    # Over the bound, or nothing there: left to Spark.
    assert read_driver_table(spark, uri, columns, max_bytes=total - 1) is None
    assert read_driver_table(spark, uri, columns, max_bytes=total) is not None
    assert read_driver_table(spark, as_uri(tmp_path / "absent", branch), columns) is None


@pytest.mark.parametrize("branch", ["file", "hadoop"])
def test_a_table_written_by_the_driver_reads_back_in_spark(spark, tmp_path, branch):
    from nbknn.common.driver_parquet import read_driver_table, write_driver_table

    uri = as_uri(tmp_path / "table", branch)
    (tmp_path / "table" / "shard=7").mkdir(parents=True)  # an earlier write's shard: replaced
    (tmp_path / "table" / "shard=7" / "part-00000.parquet").write_bytes(b"stale")
    parts = {
        f"shard={shard}": pa.table({"class_id": pa.array([c for s, c, _, _ in ROWS if s == shard], pa.int32()),
                                    "count": pa.array([n for s, _, _, n in ROWS if s == shard], pa.int64())})
        for shard in range(3)
    }
    write_driver_table(spark, uri, parts)
    assert sorted(p.name for p in (tmp_path / "table").iterdir() if not p.name.endswith(".crc")) == [
        "_SUCCESS", "shard=0", "shard=1", "shard=2"]
    rows = spark.read.parquet(uri).collect()
    assert sorted((row["shard"], row["class_id"], row["count"]) for row in rows) == sorted(
        (s, c, n) for s, c, _, n in ROWS)
    assert read_driver_table(spark, uri, ["count"]).column("count").to_pylist() == [n for *_, n in ROWS]
