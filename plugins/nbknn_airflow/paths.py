"""Where every output of a run lives, and the rules a path must obey to be valid on HDFS.

Layout under the data root (the tables inside each folder: :mod:`nbknn.contract`):

    models/naive_bayes/<version>/          a published model (manifest.json + tables)
    models/naive_bayes/_staging/<version>/ a model being built; renamed into place when complete
    models/naive_bayes/LATEST              the version most recently published
    rejects/<job>/<run-key>/               quarantined input records with their reason

Run keys and versions are derived from the Airflow run, so a retry of a run writes to the same
places (and overwrites its own earlier attempt), while two runs never share an output.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from urllib.parse import urlparse

from nbknn import contract

ALLOWED_SCHEMES = ("file", "hdfs", "viewfs", "s3a", "gs", "abfs", "abfss")
# The longest URI a run accepts (the URI Params' maxLength), and HDFS's default longest path
# component (dfs.namenode.fs-limits.max-component-length, in UTF-8 bytes).
MAX_URI_CHARS = 1024
MAX_COMPONENT_BYTES = 255
# Characters that no data path needs: shell metacharacters and quotes, glob characters (a glob
# could reach past the folder it names), URI fragment and query marks, backslashes.
_REFUSED_CHARS = frozenset("\n\r\t\0;|&`$<>\\'\"*?#{}[]")
# '.', '/', '\' or a control character spelled with a percent escape.
_ENCODED_SEPARATOR = re.compile(r"%(?:2e|2f|5c|[01][0-9a-f]|7f)", re.IGNORECASE)
# Characters kept as they are in a run key; everything else becomes '-'.
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class PathError(ValueError):
    """A URI or path that the pipeline refuses to read or write."""


def run_key(run_id: str) -> str:
    """A path component derived from an Airflow run id that HDFS accepts.

    Run ids hold ':' and '+' (``manual__2026-01-01T00:00:00+00:00``); HDFS refuses ':' in any
    path name. Unsafe characters become '-', and a digest of the original id keeps two ids that
    differ only in those characters apart.
    """
    if not run_id:
        raise PathError("run id must not be empty")
    readable = _UNSAFE_KEY_CHARS.sub("-", run_id).strip("-.") or "run"
    digest = hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:8]
    return f"{readable[:100]}-{digest}"


def model_version(run_after: datetime, run_id: str) -> str:
    """Model version of a training run: sortable by time, unique per run, stable across retries."""
    stamp = run_after.strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{hashlib.sha256(run_id.encode('utf-8')).hexdigest()[:8]}"


def validate_hdfs_path(path: str) -> None:
    """Refuse a path that HDFS would not accept, whatever the scheme we run on today.

    HDFS's rules (DFSUtil.isValidName): absolute; no component that is '.', '..', or holds ':'.
    A file:// root accepts all of these, so without this check a test on file:// would pass
    and the same run would fail in production.
    """
    if not path.startswith("/"):
        raise PathError(f"path must be absolute (got {path!r})")
    for component in path.split("/")[1:]:
        if component in (".", ".."):
            raise PathError(f"path must not contain '.' or '..' components (got {path!r})")
        if ":" in component:
            raise PathError(f"path component {component!r} holds ':', which HDFS refuses (in {path!r})")
        if any(not ch.isprintable() for ch in component):
            raise PathError(f"path must not contain control characters (got {path!r})")
        if len(component.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise PathError(
                f"path component {component[:40]!r}... is {len(component.encode('utf-8'))} bytes long, "
                f"more than HDFS's {MAX_COMPONENT_BYTES}"
            )


def check_characters(text: str, what: str) -> None:
    """Refuse characters that no data path needs (see _REFUSED_CHARS) and encoded separators."""
    bad = sorted({ch for ch in text if ch in _REFUSED_CHARS or not ch.isprintable()})
    if bad:
        raise PathError(f"{what} holds characters that no data path needs {bad} (got {text[:200]!r})")
    if _ENCODED_SEPARATOR.search(text):
        raise PathError(
            f"{what} holds a percent-encoded '.', '/', '\\' or control character (got {text[:200]!r})"
        )


def join(base: str, *parts: str) -> str:
    """Join URI path parts with '/', each part validated as relative and HDFS-safe."""
    uri = base.rstrip("/")
    for part in parts:
        check_characters(part, "path part")
        part = part.strip("/")
        if part:
            uri = f"{uri}/{part}"
    validate_hdfs_path(urlparse(uri).path or "/")
    return uri


def resolve_input(uri_or_relative: str, roots: list[str]) -> str:
    """An input URI confined to the allowed roots; a relative path is taken under the first root."""
    if not isinstance(uri_or_relative, str):
        raise PathError(f"input URI must be a string (got {uri_or_relative!r})")
    text = uri_or_relative.strip()
    if not text:
        raise PathError("input URI must not be empty")
    if len(text) > MAX_URI_CHARS:
        raise PathError(f"input URI is {len(text)} characters long, more than {MAX_URI_CHARS}")
    check_characters(text, "input URI")
    if "://" not in text and not text.startswith("/"):
        return join(roots[0], text)
    parsed = urlparse(text)
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise PathError(f"input URI scheme must be one of {ALLOWED_SCHEMES} (got {parsed.scheme or 'none'!r})")
    validate_hdfs_path(parsed.path)
    for root in roots:
        root_parsed = urlparse(root)
        same_store = (parsed.scheme, parsed.netloc) == (root_parsed.scheme, root_parsed.netloc)
        root_path = root_parsed.path.rstrip("/")
        if same_store and (parsed.path == root_path or parsed.path.startswith(root_path + "/")):
            return text.rstrip("/")
    raise PathError(f"input URI {text!r} is outside the allowed roots {roots}")


def nb_models_dir(root: str) -> str:
    return join(root, contract.NB_MODELS_AREA)


def nb_version_dir(root: str, version: str) -> str:
    return join(nb_models_dir(root), version)


def nb_staging_dir(root: str, version: str) -> str:
    return join(nb_models_dir(root), "_staging", version)


def nb_latest_uri(root: str) -> str:
    return join(nb_models_dir(root), contract.LATEST_NAME)


def nb_manifest_uri(version_dir: str) -> str:
    return join(version_dir, contract.MANIFEST_NAME)


def rejects_dir(root: str, job: str, key: str) -> str:
    return join(root, "rejects", job, key)


# --- Naive Bayes prediction ------------------------------------------------------------------

# A model version as nb_train names them (model_version) or a person may: a single safe name.
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_version_name(version: str) -> str:
    """A model version is one path component: no '/', ':', '..' or spaces."""
    if not _VERSION_NAME.match(version or ""):
        raise PathError(
            f"model version must match {_VERSION_NAME.pattern} (got {version!r})"
        )
    return version


def nb_prediction_layout(root: str, key: str) -> dict[str, str]:
    """Outputs of one nb_predict run (:func:`nbknn.contract.prediction_layout`) below a validated run dir."""
    return contract.prediction_layout(join(root, contract.NB_PREDICTIONS_AREA, key))
