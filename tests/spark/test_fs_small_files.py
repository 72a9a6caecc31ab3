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
