"""Small files written through the Spark side's nbknn.common.fs: what killed writes left beside a
file is removed by its next write, and a write whose temporary file a concurrent writer removed
writes it again (the Airflow side's twin: tests/unit/test_model_publish.py; a real stopped
publication: tests/reliability/test_fault_injection.py)."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.spark

STALE = [".LATEST.0123456789abcdef0123456789abcdef.tmp", ".LATEST.fedcba9876543210fedcba9876543210.tmp"]
# Not temporary files of LATEST: kept.
OTHERS = [".manifest.json.0123456789abcdef0123456789abcdef.tmp", ".LATEST.short.tmp", "LATEST.bak"]


def test_the_next_write_removes_what_killed_writes_left(spark, tmp_path):
    from nbknn.common import fs

    for name in STALE + OTHERS:
        (tmp_path / name).write_text("v0\n")
    fs.write_text_atomic(spark, (tmp_path / "LATEST").as_uri(), "v2\n")
    assert (tmp_path / "LATEST").read_text() == "v2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["LATEST", *OTHERS])


def test_a_write_whose_temporary_file_vanished_writes_it_again(spark, tmp_path, monkeypatch):
    from nbknn.common import fs

    real_replace, removed = fs._replace, []

    def concurrent_cleanup_first(spark_, source_uri, target_uri):
        if not removed:
            removed.append(source_uri)
            os.remove(urlparse(source_uri).path)
        real_replace(spark_, source_uri, target_uri)

    monkeypatch.setattr(fs, "_replace", concurrent_cleanup_first)
    fs.write_json_atomic(spark, (tmp_path / "summary.json").as_uri(), {"rows": 3})
    assert len(removed) == 1
    assert (tmp_path / "summary.json").read_text() == '{\n  "rows": 3\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_hadoop_branches_that_hdfs_takes_write_replace_and_read(spark, tmp_path):
    """A path without a scheme goes through Hadoop's FileSystem and FileContext, as an hdfs:// URI
    does (Hadoop resolves it against fs.defaultFS, the local disk here): a small file written,
    renamed over an existing one with OVERWRITE, read back; a binary file written; a directory
    published over an earlier version."""
    from nbknn.common import fs

    base = str(tmp_path)
    (tmp_path / "LATEST").write_text("v1\n")
    (tmp_path / STALE[0]).write_text("v0\n")  # left by a killed write
    fs.write_text_atomic(spark, f"{base}/LATEST", "v2\n")
    assert (tmp_path / "LATEST").read_text() == "v2\n"
    assert fs.read_text(spark, f"{base}/LATEST") == "v2"
    fs.write_bytes(spark, f"{base}/out/picture.png", b"\x89PNG\r\n")
    assert (tmp_path / "out" / "picture.png").read_bytes() == b"\x89PNG\r\n"
    fs.publish_dir(spark, f"{base}/out", f"{base}/published")
    fs.write_bytes(spark, f"{base}/again/picture.png", b"v2")
    fs.publish_dir(spark, f"{base}/again", f"{base}/published")
    assert (tmp_path / "published" / "picture.png").read_bytes() == b"v2"
    assert fs.exists(spark, f"{base}/published") and not fs.exists(spark, f"{base}/again")
    # Hadoop's local FileSystem keeps a checksum file beside each file; nothing else is left (no
    # hidden temporary of LATEST, no displaced or temporary sibling of the published directory).
    assert [name for name in fs.list_names(spark, base) if not name.endswith(".crc")] == ["LATEST", "published"]
