"""nb_train's ``publish`` step without Spark: write the manifest, move the staging directory into
place and point ``LATEST`` at the version, through the Airflow side's storage layer (fsspec).

Publishing a model is a handful of metadata operations, so it runs in the Airflow task itself
instead of starting a JVM. Each visible change is one atomic operation of the store:

* a small file (the manifest, ``LATEST``) is written under a hidden temporary name beside its
  target, then renamed over the target in one step: ``os.replace`` on ``file://``; on ``hdfs://``
  WebHDFS's ``RENAME`` with ``renameoptions=OVERWRITE``, which the namenode runs as one operation
  (``rename2`` with ``Options.Rename.OVERWRITE``, the call the Spark side makes through Hadoop's
  ``FileContext``);
* a directory is renamed, never copied: ``os.rename`` on ``file://``, WebHDFS ``RENAME`` with
  ``renameoptions=NONE`` on ``hdfs://`` (fails if the target exists, never moves into it).

Other stores have no atomic rename through fsspec (object stores copy), so publishing there is
refused instead of pretending. The same atomic small-file writes serve the report tasks' pictures
and pages (``nbknn_airflow.report_pages``). The steps and their order are those of the Spark application
``nb_publish_model.py`` (``nbknn.naive_bayes.publish``); both build the manifest with
:func:`nbknn.contract.model_manifest`, so they publish the same model the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import uuid
from urllib.parse import unquote, urlparse

from nbknn import contract
from nbknn_airflow import storage


class PublishRefused(ValueError):
    """Publishing cannot work with these arguments or on this store: a retry would fail the same way."""


# --- the store's operations --------------------------------------------------------------------


def _local_path(uri: str) -> str | None:
    """The local path of a ``file://`` URI, else None."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else None


def _webhdfs(uri: str):
    """(WebHDFS filesystem, path) of an ``hdfs://`` URI; refuses every other store."""
    scheme = urlparse(uri).scheme
    if scheme != "hdfs":
        raise PublishRefused(
            f"cannot publish on {scheme}:// without Spark: only file:// and hdfs:// (through WebHDFS) "
            f"offer the atomic renames publishing needs (got {uri})"
        )
    return storage.filesystem(uri)


def exists(uri: str) -> bool:
    return storage.exists(uri)


def delete(uri: str) -> None:
    """Delete a file or a directory tree; a missing path is not an error."""
    local = _local_path(uri)
    if local is not None:
        if os.path.isdir(local) and not os.path.islink(local):
            shutil.rmtree(local)
        elif os.path.lexists(local):
            os.remove(local)
        return
    fs, path = _webhdfs(uri)
    fs.rm(path, recursive=True)  # WebHDFS DELETE: {"boolean": false} for a missing path, no error


def makedirs(uri: str) -> None:
    local = _local_path(uri)
    if local is not None:
        os.makedirs(local, exist_ok=True)
        return
    fs, path = _webhdfs(uri)
    fs.mkdir(path)  # WebHDFS MKDIRS succeeds when the directory exists


def list_names(uri: str) -> list[str]:
    """Names of the entries directly under a directory (sorted)."""
    local = _local_path(uri)
    if local is not None:
        return sorted(os.listdir(local))
    fs, path = _webhdfs(uri)
    return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False))


def _rename(source_uri: str, target_uri: str, overwrite: bool) -> None:
    source, target = _local_path(source_uri), _local_path(target_uri)
    if source is not None and target is not None:
        if overwrite:
            os.replace(source, target)  # rename(2): atomic, replaces a file
            return
        if os.path.lexists(target):
            raise FileExistsError(f"rename failed: {target_uri} exists")
        os.rename(source, target)
        return
    fs, source_path = _webhdfs(source_uri)
    _, target_path = _webhdfs(target_uri)
    # rename2: with NONE it fails when the target exists; with OVERWRITE it replaces a file in one
    # namenode operation. Either way a failure is an HTTP error, raised by _call.
    fs._call(
        "RENAME",
        method="put",
        path=source_path,
        destination=target_path,
        renameoptions="OVERWRITE" if overwrite else "NONE",
    )


def rename(source_uri: str, target_uri: str) -> None:
    """Rename a file or directory in one atomic step; fails if the target exists."""
    _rename(source_uri, target_uri, overwrite=False)


def replace_file(source_uri: str, target_uri: str) -> None:
    """Rename a file over an existing one in one atomic step."""
    _rename(source_uri, target_uri, overwrite=True)


def write_text_atomic(uri: str, text: str) -> None:
    """Write a small text file so that readers see either the old file or the whole new one; then
    remove what earlier writes of it left when killed before their rename (the Spark side's
    nbknn.common.fs.write_text_atomic, step for step)."""
    write_bytes_atomic(uri, text.encode("utf-8"))


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """:func:`write_text_atomic` for any small file (a picture, a page)."""
    parent, name = uri.rstrip("/").rsplit("/", 1)
    for attempt in range(_SMALL_FILE_ATTEMPTS):
        temp_uri = f"{parent}/{contract.small_file_temp_name(name, uuid.uuid4().hex)}"
        try:
            _write_new_file(temp_uri, data)
            replace_file(temp_uri, uri)
            break
        except Exception:
            # Removed as abandoned by a concurrent writer of the same file before its rename.
            if attempt + 1 == _SMALL_FILE_ATTEMPTS or exists(temp_uri):
                raise
    remove_abandoned_temps(parent, name)


_SMALL_FILE_ATTEMPTS = 3


def _write_new_file(uri: str, data: bytes) -> None:
    local = _local_path(uri)
    if local is not None:
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as out:
            out.write(data)
        return
    fs, path = _webhdfs(uri)
    with fs.open(path, "wb") as out:
        out.write(data)


def remove_abandoned_temps(parent_uri: str, name: str) -> list[str]:
    """Delete the temporary files of writes of ``name`` killed before their rename (called right
    after a write of ``name`` renamed its own); returns the names removed."""
    removed = [entry for entry in list_names(parent_uri) if contract.is_small_file_temp(entry, name)]
    for entry in removed:
        delete(f"{parent_uri}/{entry}")
    return removed


def write_json_atomic(uri: str, document) -> None:
    # The same bytes as the Spark side's nbknn.common.fs.write_json_atomic.
    write_text_atomic(uri, json.dumps(document, indent=2, sort_keys=True) + "\n")


def temporary_sibling(uri: str, tag: str) -> str:
    """A fresh name beside ``uri`` starting with '_' (skipped by Spark and Hadoop readers)."""
    parent, name = uri.rstrip("/").rsplit("/", 1)
    return f"{parent}/_{tag}-{name}-{uuid.uuid4().hex[:12]}"


def publish_dir(staging_uri: str, target_uri: str) -> None:
    """Move a complete directory into place, replacing an earlier version of it (a rerun).

    No earlier version: one atomic rename. Otherwise the old directory is renamed aside, the new
    one renamed in and the old one deleted: a reader sees the old directory or the new one whole
    (or, between the two renames, none), never a mixture. Then what killed attempts left beside
    the target is removed (one attempt of a task runs at a time, so those attempts are gone).
    """
    target = target_uri.rstrip("/")
    parent, name = target.rsplit("/", 1)
    if exists(target):
        displaced = temporary_sibling(target, "replaced")
        rename(target, displaced)
        rename(staging_uri, target)
        delete(displaced)
    else:
        makedirs(parent)
        rename(staging_uri, target)
    abandoned = re.compile(rf"^_(tmp|replaced)-{re.escape(name)}-[0-9a-f]{{12}}$")
    for entry in list_names(parent):
        if abandoned.match(entry):
            delete(f"{parent}/{entry}")


# --- publishing ----------------------------------------------------------------------------------


def build_manifest(staging_dir: str, version: str, model_type: str, alpha: float, fit_prior: bool,
                   lineage: dict, selection: bool = False) -> dict:
    """The manifest of the model staged in ``staging_dir``, from the summaries its jobs wrote; with
    ``selection``, the model's parameters are the point the selection job chose."""
    prior = storage.read_json(contract.job_summary_uri(staging_dir, "class_prior"))
    terms = storage.read_json(contract.job_summary_uri(staging_dir, "term_counts"))
    merge_uri = contract.job_summary_uri(staging_dir, "merge")
    merge = storage.read_json(merge_uri) if exists(merge_uri) else None
    chosen = storage.read_json(contract.job_summary_uri(staging_dir, contract.SELECTION_JOB)) if selection else None
    model = contract.selected_model(chosen) if chosen else {"type": model_type, "alpha": alpha, "fit_prior": fit_prior}
    created_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return contract.model_manifest(prior, terms, merge, version, model, lineage, created_at, chosen)


def publish_model(
    staging_dir: str,
    version_dir: str,
    latest_uri: str,
    version: str,
    model_type: str,
    alpha: float,
    fit_prior: bool,
    lineage: dict,
    selection: bool = False,
) -> dict:
    """Write the manifest, rename staging into place, point LATEST at the version; returns the manifest.

    With ``selection`` the model's parameters are those the selection job chose (its summary in
    the staging directory), and the manifest keeps its table.
    A rerun after a kill at any point converges: a staging directory that is still there is
    (re)published; a version already in place with no staging left only needs LATEST.
    """
    problem = contract.model_params_problem(model_type, alpha)
    if problem:
        raise PublishRefused(problem)
    for uri in (staging_dir, version_dir, latest_uri):
        if _local_path(uri) is None:
            _webhdfs(uri)  # refuses a store without atomic renames before anything changes
    if exists(staging_dir):
        staged_manifest = contract.manifest_uri(staging_dir)
        if exists(staged_manifest):
            # An earlier attempt wrote the manifest and was stopped before the rename; it may
            # already have deleted the job summaries that the manifest is built from.
            manifest = storage.read_json(staged_manifest)
        else:
            manifest = build_manifest(staging_dir, version, model_type, alpha, fit_prior, lineage, selection)
            write_json_atomic(staged_manifest, manifest)
        delete(contract.work_uri(staging_dir, ""))
        # A rerun of a cleared run that had published already swaps its new build in.
        publish_dir(staging_dir, version_dir)
    elif exists(contract.manifest_uri(version_dir)):
        manifest = storage.read_json(contract.manifest_uri(version_dir))
    else:
        raise FileNotFoundError(f"nothing to publish: neither {staging_dir} nor {version_dir} exists")
    write_text_atomic(latest_uri, version + "\n")
    return manifest
