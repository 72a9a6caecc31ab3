"""JVM options for short Spark applications: the quick JIT tier and a class-data-sharing archive
of Spark's classes, which the embedded local environment (``make demo``, ``make airflow``) and the
test suite's spark-submits use. The compose image builds its archive with ``python -m
nbknn_local.jvm PATH`` (Dockerfile) for its drivers and executors.

A short application spends most of its CPU starting the JVM. Measured on a trivial local-mode
application (read, group, write): 33-36 s of CPU with the JVM's defaults, 19-21 s with the quick
JIT tier only (``-XX:TieredStopAtLevel=1``: the optimising tier costs more than it saves in a job
this short), and 9.7 s when Spark's classes also come from a class-data-sharing archive
(``-XX:SharedArchiveFile``) instead of being loaded and verified from the jars every time. The
archive is built once per machine (about 40 s) by a representative application and cached under
``<build dir>/jvm/``; a JVM that finds it unusable (another JDK, another class path) prints a
warning and loads the classes itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

QUICK_JIT = "-XX:TieredStopAtLevel=1"

# What the archive's application does: the kinds of work the pipeline's applications do (JSON
# and Parquet I/O, a shuffle, Python workers through Arrow), so that their classes are archived.
_ARCHIVE_APP = """
import sys
import pyarrow as pa
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
out = sys.argv[1]
spark.range(2000).selectExpr("cast(id as string) as id", "id % 7 as k", "repeat('x', 20) as text") \\
    .write.mode("overwrite").json(out + "/json")
docs = spark.read.schema("id string, k long, text string").json(out + "/json")
counts = docs.groupBy("k").count().join(docs.selectExpr("k", "length(text) as n"), "k")
def double(batches):
    for batch in batches:
        yield pa.RecordBatch.from_arrays([batch.column(0)], names=["k"])
counts.select("k").mapInArrow(double, "k long").write.mode("overwrite").parquet(out + "/parquet")
spark.read.parquet(out + "/parquet").count()
spark.stop()
"""


def _archive_name() -> str:
    """Names the JDK and the Spark build: a new one of either gets a new archive."""
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return f"spark-{pyspark.__version__}-{hashlib.sha256(java.encode()).hexdigest()[:12]}.jsa"


def spark_class_archive(build_dir: Path, venv_bin: Path) -> Path | None:
    """The class-data-sharing archive of Spark's classes, built when missing; None if it cannot be."""
    archive = build_dir / _archive_name()
    if archive.exists():
        return archive
    build_dir.mkdir(parents=True, exist_ok=True)
    # The suite's xdist workers all ask at start: one builds, the others wait for its archive.
    with open(build_dir / ".archive.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if archive.exists():
            return archive
        return _build_archive(archive, venv_bin)


def _build_archive(archive: Path, venv_bin: Path) -> Path | None:
    with tempfile.TemporaryDirectory(prefix="nbknn-jvm-archive-") as scratch:
        app = Path(scratch, "archive_app.py")
        app.write_text(_ARCHIVE_APP)
        partial = archive.parent / f".{archive.name}.{os.getpid()}.partial"
        env = {
            **os.environ,
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_SUBMIT_OPTS": f"{QUICK_JIT} -XX:ArchiveClassesAtExit={partial}",
        }
        result = subprocess.run([str(venv_bin / "spark-submit"), str(app), Path(scratch, "out").as_uri()],
                                env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not partial.exists():
            partial.unlink(missing_ok=True)
            print(f"[tests] no JVM class archive (spark-submit exit {result.returncode}); "
                  f"spark-submits load their classes from the jars:\n{result.stderr[-2000:]}", file=sys.stderr)
            return None
        # Whole or not at all: another session may be looking for the same file.
        os.replace(partial, archive)
    return archive


def short_job_options(archive: Path | None) -> str:
    """SPARK_SUBMIT_OPTS for short applications: the quick JIT, and the archive when there is one."""
    return QUICK_JIT if archive is None else f"{QUICK_JIT} -XX:SharedArchiveFile={archive}"


def main(argv: list[str]) -> None:
    """``python -m nbknn_local.jvm ARCHIVE``: builds the archive at that path (the compose image
    does at build time, for its drivers and executors), with the spark-submit found on PATH."""
    import shutil

    if len(argv) != 1:
        sys.exit("usage: python -m nbknn_local.jvm ARCHIVE_PATH")
    archive, spark_submit = Path(argv[0]), shutil.which("spark-submit")
    if spark_submit is None:
        sys.exit("spark-submit is not on PATH")
    archive.parent.mkdir(parents=True, exist_ok=True)
    if _build_archive(archive, Path(spark_submit).parent) is None:
        sys.exit(1)
    print(f"class archive: {archive} ({archive.stat().st_size // 2**20} MiB)")


if __name__ == "__main__":
    main(sys.argv[1:])
