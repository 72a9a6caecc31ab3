"""Airflow-side reads of hdfs:// URIs go through WebHDFS (nbknn_airflow.storage).

HDFS cannot run here, so a small HTTP server stands in for the namenode and the datanode with the
WebHDFS REST protocol as Hadoop documents it: GETFILESTATUS answers a FileStatus JSON (or a
RemoteException with 404), OPEN answers a 307 redirect to the datanode, which serves the bytes.
The client side is fsspec's real webhdfs implementation, as in the compose stack.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from nbknn_airflow import storage

MANIFEST = {"version": "20260301T000000-abc", "num_shards": 3, "note": "ünïcode"}


class FakeWebHDFS(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[tuple[str, dict]] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        datanode = url.path.startswith("/datanode")
        path = url.path.removeprefix("/datanode").removeprefix("/webhdfs/v1")
        self.requests.append((("DN " if datanode else "NN ") + query.get("op", ""), {"path": path, **query}))
        if path not in self.files:
            error = {"RemoteException": {"exception": "FileNotFoundException",
                                         "javaClassName": "java.io.FileNotFoundException",
                                         "message": f"File does not exist: {path}"}}
            return self._send(404, json.dumps(error).encode(), {"Content-Type": "application/json"})
        data = self.files[path]
        if query["op"] == "GETFILESTATUS":
            status = {"FileStatus": {"length": len(data), "type": "FILE", "pathSuffix": "", "owner": "airflow",
                                     "group": "supergroup", "permission": "644", "replication": 1,
                                     "blockSize": 134217728, "modificationTime": 0, "accessTime": 0}}
            return self._send(200, json.dumps(status).encode(), {"Content-Type": "application/json"})
        if query["op"] == "OPEN" and not datanode:
            location = f"http://127.0.0.1:{self.server.server_port}/datanode{url.path}?{url.query}"
            return self._send(307, headers={"Location": location})
        if query["op"] == "OPEN":
            offset = int(query.get("offset", 0))
            length = int(query.get("length", len(data) - offset))
            return self._send(200, data[offset : offset + length], {"Content-Type": "application/octet-stream"})
        return self._send(400)


@pytest.fixture
def webhdfs(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWebHDFS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeWebHDFS.files = {
        "/nbknn/models/naive_bayes/LATEST": b"20260301T000000-abc\n",
        "/nbknn/models/naive_bayes/20260301T000000-abc/manifest.json": json.dumps(MANIFEST).encode(),
        "/nbknn/models/naive_bayes/v1/term_counts/shard=0/_SUCCESS": b"",
    }
    FakeWebHDFS.requests = []
    monkeypatch.setenv("NBKNN_WEBHDFS_PORT", str(server.server_port))
    monkeypatch.setenv("HADOOP_USER_NAME", "airflow")
    yield FakeWebHDFS
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "uri, user, expected",
    [
        ("hdfs://namenode:8020/nbknn/models/LATEST", None, "webhdfs://namenode:9870/nbknn/models/LATEST"),
        ("hdfs://namenode/nbknn/x.json", "airflow", "webhdfs://airflow@namenode:9870/nbknn/x.json"),
        ("hdfs://namenode:8020/nbknn/term_counts/shard=0", None, "webhdfs://namenode:9870/nbknn/term_counts/shard=0"),
        ("file:///tmp/data/models/LATEST", "airflow", "file:///tmp/data/models/LATEST"),
    ],
)
def test_hdfs_uris_map_to_the_namenode_http_port(monkeypatch, uri, user, expected):
    monkeypatch.delenv("NBKNN_WEBHDFS_PORT", raising=False)
    if user:
        monkeypatch.setenv("HADOOP_USER_NAME", user)
    else:
        monkeypatch.delenv("HADOOP_USER_NAME", raising=False)
    assert storage._fsspec_url(uri) == expected


def test_hdfs_uri_without_a_namenode_host_is_refused():
    with pytest.raises(ValueError, match="needs the namenode host"):
        storage._fsspec_url("hdfs:///nbknn/models/LATEST")


def test_reads_json_and_text_through_webhdfs_redirects(webhdfs):
    root = "hdfs://127.0.0.1:8020/nbknn/models/naive_bayes"

    assert storage.read_text(f"{root}/LATEST").strip() == "20260301T000000-abc"
    assert storage.read_json(f"{root}/20260301T000000-abc/manifest.json") == MANIFEST

    ops = [op for op, _ in webhdfs.requests]
    # The namenode redirected OPEN, and the bytes came from the "datanode".
    assert "NN OPEN" in ops and "DN OPEN" in ops
    assert all(params.get("user.name") == "airflow" for op, params in webhdfs.requests if op.startswith("NN"))


def test_exists_through_webhdfs(webhdfs):
    root = "hdfs://127.0.0.1:8020/nbknn/models/naive_bayes"
    assert storage.exists(f"{root}/LATEST")
    assert storage.exists(f"{root}/v1/term_counts/shard=0/_SUCCESS")
    assert not storage.exists(f"{root}/missing/manifest.json")


def test_missing_file_raises_file_not_found(webhdfs):
    with pytest.raises(FileNotFoundError, match="File does not exist"):
        storage.read_json("hdfs://127.0.0.1:8020/nbknn/models/naive_bayes/nope/manifest.json")
