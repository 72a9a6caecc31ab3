"""The zip archives shipped to Spark applications (the library zip, the scanner's jar): written with
fixed timestamps, so that the same members always give the same bytes, and published whole."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

_MEMBER_DATE = (2020, 1, 1, 0, 0, 0)


def publish_archive(target: Path, members: dict[str, bytes]) -> Path:
    """Writes ``members`` (name -> content, in name order) as the zip ``target``, staged beside it.
    Concurrent tasks may build the same archive; the rename makes whichever finishes last win whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staged = tempfile.mkstemp(dir=target.parent, suffix=".zip.tmp")
    os.close(handle)
    with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_MEMBER_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, members[name])
    os.replace(staged, target)
    return target
