"""nb_train's publish step without a JVM (nbknn_airflow.model_publish): what it publishes, how a
rerun after a kill converges, that LATEST is only ever replaced whole, and that on hdfs:// every
visible change is one WebHDFS rename with the options that make it atomic.

The hdfs:// tests talk to a small HTTP server that follows the WebHDFS REST protocol over a local
directory (namenode operations plus the datanode redirects fsspec's client follows); its RENAME
keeps HDFS's semantics: without options a boolean, with ``renameoptions`` ``rename2`` (NONE fails
when the target exists, OVERWRITE replaces a file).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from nbknn import contract
from nbknn_airflow import model_publish
from nbknn_airflow.model_publish import PublishRefused, publish_model

VERSION = "20260301T000000Z-abc"
PRIOR = {"input": {"uri": "file:///in"}, "records": {"read": 3, "accepted": 3, "rejected": 0,
                                                      "rejected_by_reason": {}},
         "rejects_uri": None, "classes": 2, "partitions": ["file:///in/date=2026-03-01"]}
TERMS = {"tokenizer": {"pattern": "x", "lowercase": True}, "documents": 3, "vocabulary_size": 5, "entries": 6,
         "tokens": 9, "terms_below_min_count": 0, "min_term_count": 1,
         "shards": [{"shard": 0, "entries": 6, "class_ids": [0, 1]}], "shard_imbalance": 0.0,
         "code_version": "0.1.0+test"}
LINEAGE = {"run_id": "manual__1", "mode": "full"}


def stage_model(root: Path) -> Path:
    """A staging directory as the training jobs leave it: tables, scratch space, job summaries."""
    staging = root / "models" / "naive_bayes" / "_staging" / VERSION
    for table in ("classes", "vocabulary", "term_counts/shard=0"):
        (staging / table).mkdir(parents=True)
        (staging / table / "part-00000.parquet").write_bytes(b"PAR1 table " + table.encode())
        (staging / table / "_SUCCESS").write_bytes(b"")
    summaries = staging / "_work" / "summaries"
    summaries.mkdir(parents=True)
    (summaries / "class_prior.json").write_text(json.dumps(PRIOR))
    (summaries / "term_counts.json").write_text(json.dumps(TERMS))
    return staging


def arguments(root_uri: str, **overrides) -> dict:
    models = f"{root_uri}/models/naive_bayes"
    return {"staging_dir": f"{models}/_staging/{VERSION}", "version_dir": f"{models}/{VERSION}",
            "latest_uri": f"{models}/LATEST", "version": VERSION, "model_type": "multinomial", "alpha": 1.0,
            "fit_prior": True, "lineage": LINEAGE, **overrides}


def expected_manifest(created_at: str) -> dict:
    model = {"type": "multinomial", "alpha": 1.0, "fit_prior": True}
    return contract.model_manifest(PRIOR, TERMS, None, VERSION, model, LINEAGE, created_at)


def check_published(root: Path) -> dict:
    models = root / "models" / "naive_bayes"
    version_dir = models / VERSION
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest == expected_manifest(manifest["created_at"])
    assert (version_dir / "term_counts" / "shard=0" / "part-00000.parquet").read_bytes() == b"PAR1 table term_counts/shard=0"
    assert not (version_dir / "_work").exists()
    assert not (models / "_staging" / VERSION).exists()
    assert (models / "LATEST").read_text() == VERSION + "\n"
    # Nothing half-done is left beside the outputs.
    assert {p.name for p in models.iterdir()} == {"LATEST", VERSION, "_staging"}
    return manifest


# --- file:// -------------------------------------------------------------------------------------


def test_publishes_the_staged_model_and_points_latest_at_it(tmp_path):
    stage_model(tmp_path)
    (tmp_path / "models" / "naive_bayes" / "LATEST").write_text("older\n")
    manifest = publish_model(**arguments(tmp_path.as_uri()))
    assert check_published(tmp_path) == manifest
    assert manifest["lineage"]["partitions"] == [
        {"uri": "file:///in/date=2026-03-01", "version": VERSION, "run_id": "manual__1"}]


def test_a_rerun_after_a_kill_at_any_step_converges(tmp_path, monkeypatch):
    stage_model(tmp_path)
    args = arguments(tmp_path.as_uri())
    models = tmp_path / "models" / "naive_bayes"
    # Killed after writing the manifest and deleting the summaries, before the rename.
    real_publish_dir = model_publish.publish_dir

    def killed(*_):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(model_publish, "publish_dir", killed)
    with pytest.raises(KeyboardInterrupt):
        publish_model(**args)
    assert not (models / VERSION).exists() and not (models / "LATEST").exists()
    assert not (models / "_staging" / VERSION / "_work").exists()
    monkeypatch.setattr(model_publish, "publish_dir", real_publish_dir)
    first = publish_model(**args)
    assert check_published(tmp_path) == first
    # Killed after the rename, before LATEST: a rerun only moves LATEST.
    (models / "LATEST").unlink()
    assert publish_model(**args) == first
    check_published(tmp_path)


def test_a_cleared_rerun_swaps_its_new_build_in_and_removes_abandoned_siblings(tmp_path):
    stage_model(tmp_path)
    args = arguments(tmp_path.as_uri())
    publish_model(**args)
    models = tmp_path / "models" / "naive_bayes"
    stage_model(tmp_path)
    (models / VERSION / "stale-only-in-the-first-build").write_text("x")
    (models / f"_tmp-{VERSION}-0123456789ab").mkdir()
    (models / f"_replaced-{VERSION}-ba9876543210").mkdir()
    publish_model(**args)
    check_published(tmp_path)
    assert not (models / VERSION / "stale-only-in-the-first-build").exists()


def test_latest_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    stage_model(tmp_path)
    latest = tmp_path / "models" / "naive_bayes" / "LATEST"
    latest.write_text("older\n")

    real_replace_file = model_publish.replace_file

    def killed_before_renaming_latest(source_uri, target_uri):
        if target_uri.endswith("/LATEST"):
            assert Path(urlparse(source_uri).path).read_text() == VERSION + "\n"  # written whole first
            raise KeyboardInterrupt("killed")
        real_replace_file(source_uri, target_uri)

    monkeypatch.setattr(model_publish, "replace_file", killed_before_renaming_latest)
    with pytest.raises(KeyboardInterrupt):
        publish_model(**arguments(tmp_path.as_uri()))
    # The model is in place, LATEST still names the older one, whole.
    assert (tmp_path / "models" / "naive_bayes" / VERSION / "manifest.json").exists()
    assert latest.read_text() == "older\n"
    # The stopped write's hidden temporary file is there until the next publication removes it.
    models = tmp_path / "models" / "naive_bayes"
    assert [p.name for p in models.iterdir() if p.name.endswith(".tmp")] != []
    monkeypatch.setattr(model_publish, "replace_file", real_replace_file)
    publish_model(**arguments(tmp_path.as_uri()))
    check_published(tmp_path)


def test_a_write_whose_temporary_file_a_concurrent_writer_removed_starts_again(tmp_path, monkeypatch):
    """Two runs replace LATEST at once: each removes the other's temporary files as abandoned once
    its own rename is done, so one may find its file gone before its rename; it writes it again."""
    latest = tmp_path / "models" / "naive_bayes" / "LATEST"
    latest.parent.mkdir(parents=True)
    real_replace_file = model_publish.replace_file
    removed = []

    def other_writer_cleans_up_first(source_uri, target_uri):
        if not removed:
            removed.append(source_uri)
            os.remove(urlparse(source_uri).path)
        real_replace_file(source_uri, target_uri)

    monkeypatch.setattr(model_publish, "replace_file", other_writer_cleans_up_first)
    model_publish.write_text_atomic(latest.as_uri(), "v2\n")
    assert len(removed) == 1 and latest.read_text() == "v2\n"
    assert sorted(p.name for p in latest.parent.iterdir()) == ["LATEST"]


def test_nothing_to_publish_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to publish"):
        publish_model(**arguments(tmp_path.as_uri()))


@pytest.mark.parametrize("override, message", [
    ({"model_type": "bernoulli"}, "model_type must be one of"),
    ({"alpha": 0.0}, "alpha must be > 0"),
])
def test_parameters_prediction_cannot_apply_are_refused(tmp_path, override, message):
    stage_model(tmp_path)
    with pytest.raises(PublishRefused, match=message):
        publish_model(**arguments(tmp_path.as_uri(), **override))
    assert not (tmp_path / "models" / "naive_bayes" / VERSION).exists()


def test_a_store_without_atomic_renames_is_refused_before_any_change(tmp_path):
    with pytest.raises(PublishRefused, match="only file:// and hdfs://"):
        publish_model(**arguments("s3a://bucket/nbknn"))


# --- hdfs:// through WebHDFS ------------------------------------------------------------------------


class FakeWebHDFS(BaseHTTPRequestHandler):
    """WebHDFS over a local directory (``root``); records every namenode request."""

    root: Path
    requests: list[tuple[str, dict]] = []

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, document: dict, status: int = 200) -> None:
        self._send(status, json.dumps(document).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, exception: str, message: str) -> None:
        self._json({"RemoteException": {"exception": exception, "javaClassName": f"java.io.{exception}",
                                        "message": message}}, status)

    def _request(self):
        url = urlparse(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        datanode = url.path.startswith("/datanode")
        path = url.path.removeprefix("/datanode").removeprefix("/webhdfs/v1")
        if not datanode:
            self.requests.append((query["op"], {"path": path, **query}))
        return url, query, datanode, path, self.root / path.lstrip("/")

    @staticmethod
    def _status(local: Path) -> dict:
        return {"length": local.stat().st_size if local.is_file() else 0,
                "type": "DIRECTORY" if local.is_dir() else "FILE", "pathSuffix": local.name, "owner": "airflow",
                "group": "supergroup", "permission": "755", "replication": 1, "blockSize": 134217728,
                "modificationTime": 0, "accessTime": 0}

    def do_GET(self):
        url, query, datanode, path, local = self._request()
        if not local.exists():
            return self._error(404, "FileNotFoundException", f"File does not exist: {path}")
        if query["op"] == "GETFILESTATUS":
            return self._json({"FileStatus": self._status(local)})
        if query["op"] == "LISTSTATUS":
            return self._json({"FileStatuses": {"FileStatus": [self._status(p) for p in sorted(local.iterdir())]}})
        if query["op"] == "OPEN" and not datanode:
            return self._send(307, headers={"Location": f"http://127.0.0.1:{self.server.server_port}/datanode{url.path}?{url.query}"})
        if query["op"] == "OPEN":
            return self._send(200, local.read_bytes(), {"Content-Type": "application/octet-stream"})
        return self._send(400)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_PUT(self):
        url, query, datanode, path, local = self._request()
        body = self._body()
        op = query["op"]
        if op == "CREATE" and not datanode:
            return self._send(307, headers={"Location": f"http://127.0.0.1:{self.server.server_port}/datanode{url.path}?{url.query}"})
        if op == "CREATE":
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(body)
            return self._send(201)
        if op == "MKDIRS":
            local.mkdir(parents=True, exist_ok=True)
            return self._json({"boolean": True})
        if op == "RENAME":
            target = self.root / query["destination"].lstrip("/")
            options = query.get("renameoptions")
            if not local.exists():
                return self._error(404, "FileNotFoundException", f"File does not exist: {path}")
            if options is None:  # the old rename: a boolean, and it moves *into* an existing directory
                if target.is_dir():
                    target = target / local.name
                if target.exists():
                    return self._json({"boolean": False})
                local.rename(target)
                return self._json({"boolean": True})
            if target.exists() and (options != "OVERWRITE" or target.is_dir()):
                return self._error(403, "FileAlreadyExistsException", f"rename destination {target} already exists")
            os.replace(local, target)
            return self._send(200)
        return self._send(400)

    def do_POST(self):
        url, query, datanode, path, local = self._request()
        body = self._body()
        if query["op"] == "APPEND" and not datanode:
            return self._send(307, headers={"Location": f"http://127.0.0.1:{self.server.server_port}/datanode{url.path}?{url.query}"})
        with open(local, "ab") as out:
            out.write(body)
        return self._send(200)

    def do_DELETE(self):
        url, query, datanode, path, local = self._request()
        if not local.exists():
            return self._json({"boolean": False})
        shutil.rmtree(local) if local.is_dir() else local.unlink()
        return self._json({"boolean": True})


@pytest.fixture
def webhdfs(tmp_path, monkeypatch):
    FakeWebHDFS.root = tmp_path / "hdfs"
    FakeWebHDFS.root.mkdir()
    FakeWebHDFS.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWebHDFS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("NBKNN_WEBHDFS_PORT", str(server.server_port))
    monkeypatch.setenv("HADOOP_USER_NAME", "airflow")
    yield FakeWebHDFS
    server.shutdown()
    server.server_close()


def test_publishes_through_webhdfs_with_atomic_renames_only(webhdfs):
    root = webhdfs.root / "nbknn"
    stage_model(root)
    models = root / "models" / "naive_bayes"
    (models / "LATEST").write_text("older\n")
    args = arguments("hdfs://127.0.0.1:8020/nbknn")
    publish_model(**args)
    check_published(root)
    renames = [(params["path"], params["destination"], params.get("renameoptions"))
               for op, params in webhdfs.requests if op == "RENAME"]
    staging, version_dir = f"/nbknn/models/naive_bayes/_staging/{VERSION}", f"/nbknn/models/naive_bayes/{VERSION}"
    # The manifest and LATEST replace their target in one step; the directory moves without
    # overwriting; nothing is renamed with the old, non-atomic-on-conflict semantics.
    assert [r for r in renames if r[2] is None] == []
    assert renames[-1][1:] == ("/nbknn/models/naive_bayes/LATEST", "OVERWRITE")
    assert (staging, version_dir, "NONE") in renames
    assert any(r[1] == f"{staging}/manifest.json" and r[2] == "OVERWRITE" for r in renames)
    assert all(params.get("user.name") == "airflow" for _, params in webhdfs.requests)
    # A cleared rerun: the version exists, the new build is swapped in through a displaced sibling.
    stage_model(root)
    publish_model(**args)
    check_published(root)
