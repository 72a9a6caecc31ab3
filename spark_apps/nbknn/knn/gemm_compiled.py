"""The numba hot loops of :mod:`nbknn.knn.gemm_scan`, loaded so that their compiled code is reused.

numba keys its on-disk cache by the path of the source file. spark-submit ships this library as a
zip that every application unpacks under a new temporary folder, so the loops would be compiled
again (about 10 s) in every Python worker of every application. :func:`scan_module` therefore
imports the loops from a copy of ``gemm_scan.py`` at a path named after its content, under a
per-user cache folder: the first worker on a machine compiles, every later one loads.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import pkgutil
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

#: Overrides the folder of the copies (and so of numba's cache next to them).
CACHE_ENV = "NBKNN_KERNEL_CACHE"

_lock = threading.Lock()
_loaded: list[ModuleType] = []


def scan_module() -> ModuleType:
    """The compiled loops (``scan_rows``, ``scan_both``, ``rerank``), loaded once per process."""
    if not _loaded:
        with _lock:
            if not _loaded:
                _loaded.append(load_from_stable_copy())
    return _loaded[0]


def cache_folders() -> list[Path]:
    """Where a copy may live, in order of preference."""
    folders = []
    if os.environ.get(CACHE_ENV):
        folders.append(Path(os.environ[CACHE_ENV]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folders.append(Path(base) / "nbknn" / "kernels")
    folders.append(Path(tempfile.gettempdir()) / f"nbknn-kernels-{os.getuid()}")
    return folders


def stable_copy(folder: Path, name: str, source: bytes) -> Path:
    """``folder/name.py`` holding ``source``, written once (atomically) and never rewritten: numba
    checks the file's modification time against its cache."""
    path = folder / f"{name}.py"
    if path.is_file() and path.read_bytes() == source:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(source)
    os.replace(temp, path)
    return path


def load_from_stable_copy() -> ModuleType:
    source = pkgutil.get_data("nbknn.knn", "gemm_scan.py")
    name = f"nbknn_gemm_scan_{hashlib.sha256(source).hexdigest()[:16]}"
    for folder in cache_folders():
        try:
            path = stable_copy(folder, name, source)
        except OSError:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    # No writable folder: the packaged module (compiled in this process, cached where numba can).
    return importlib.import_module("nbknn.knn.gemm_scan")
