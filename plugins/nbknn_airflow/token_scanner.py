"""The tokeniser's JVM scanner (``spark_apps/jvm/*.java``), compiled into a jar that every Spark
application of the project gets with ``--jars``.

Built when a task first needs it, at most once per source and Spark version (the name holds a hash
of both), and published whole like the library zip (:mod:`nbknn_airflow.archives`). It needs a
JDK's ``javac``; where there is none, :func:`token_scanner_jar` says so and returns None, and the
applications tokenise with Spark's regex functions instead: the same tokens, the extraction about
three times as slow.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from nbknn_airflow import settings
from nbknn_airflow.archives import publish_archive

SCANNER_SOURCES_DIR = settings.SPARK_APPS_DIR / "jvm"
# The oldest Java that Spark 4 runs on: the jar loads in any JVM of the stack.
JAVA_RELEASE = "17"

log = logging.getLogger(__name__)


def find_javac() -> str | None:
    """The Java compiler of the JDK that runs Spark ($JAVA_HOME), else the first on the PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "javac", os.X_OK):
        return str(Path(java_home) / "bin" / "javac")
    return shutil.which("javac")


def spark_jars_dir() -> Path:
    """The jars of the installed pyspark (found, not imported: the Airflow side runs without it)."""
    return Path(importlib.util.find_spec("pyspark").origin).parent / "jars"


def token_scanner_jar(build_dir: Path | None = None) -> Path | None:
    """The scanner's jar in the build directory, compiled when missing; None without a JDK."""
    build_dir = build_dir or settings.build_dir()
    sources = sorted(SCANNER_SOURCES_DIR.glob("*.java"))
    spark_version = importlib.metadata.version("pyspark")
    digest = hashlib.sha256(f"{spark_version}\0{JAVA_RELEASE}".encode())
    for path in sources:
        digest.update(f"\0{path.name}\0".encode() + path.read_bytes())
    digest = digest.hexdigest()[:16]
    target = build_dir / f"nbknn-token-scanner-{digest}.jar"
    if target.exists():
        return target
    javac = find_javac()
    if javac is None:
        log.warning("no javac (a JDK) here: the Spark applications tokenise with regexes, "
                    "which gives the same tokens more slowly; install a JDK to use the scanner")
        return None
    with tempfile.TemporaryDirectory(prefix="nbknn-scanner-") as work:
        classes = Path(work)
        compiled = subprocess.run(
            [javac, "--release", JAVA_RELEASE, "-encoding", "UTF-8", "-cp", str(spark_jars_dir() / "*"),
             "-d", str(classes), *map(str, sources)],
            capture_output=True, text=True,
        )
        if compiled.returncode != 0:
            raise RuntimeError(f"javac failed on {SCANNER_SOURCES_DIR}:\n{compiled.stderr[-4000:]}")
        return publish_archive(target, {path.relative_to(classes).as_posix(): path.read_bytes()
                                        for path in classes.rglob("*.class")})


def jars_value(*groups: str | Path | None) -> str | None:
    """One comma-separated ``--jars`` value of every jar in ``groups`` (comma-separated lists or
    paths; None skipped), each once, in order."""
    listed: list[str] = []
    for group in groups:
        for entry in str(group or "").split(","):
            if entry.strip() and entry.strip() not in listed:
                listed.append(entry.strip())
    return ",".join(listed) or None
