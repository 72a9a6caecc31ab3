"""What code produced an output: recorded in manifests and summaries."""

from __future__ import annotations

import hashlib
from importlib import resources

import nbknn


def code_version() -> str:
    """``<package version>+<hash of the package sources>``; works from a zip shipped by --py-files."""
    digest = hashlib.sha256()
    package = resources.files(nbknn)
    for entry in sorted(package.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".py"):
            digest.update(entry.name.encode())
            digest.update(entry.read_bytes())
    return f"{nbknn.__version__}+{digest.hexdigest()[:12]}"
