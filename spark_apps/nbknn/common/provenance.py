"""What code produced an output: recorded in manifests and summaries."""

from __future__ import annotations

import hashlib
from importlib import resources

import nbknn


def _sources(folder, prefix: str):
    """(relative name, file) of every .py file below ``folder``, in a stable order."""
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.is_dir() and entry.name != "__pycache__":
            yield from _sources(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".py"):
            yield f"{prefix}{entry.name}", entry


def code_version() -> str:
    """``<package version>+<hash of the package sources>``; works from a zip shipped by --py-files."""
    digest = hashlib.sha256()
    for name, source in _sources(resources.files(nbknn), ""):
        digest.update(name.encode())
        digest.update(source.read_bytes())
    return f"{nbknn.__version__}+{digest.hexdigest()[:12]}"
