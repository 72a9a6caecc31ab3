"""Shared machinery of the reliability tests: spark-submit as the Airflow operator runs it, killing
a run's process group, watching outputs while a run goes on, and comparing outputs by content.

Imported by the test modules of this folder (pytest puts the folder on ``sys.path``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import REPO_ROOT, VENV_BIN, run_entry_in_process
from processes import log_tail, start

FIGURES_DIR = REPO_ROOT / "build" / "reliability"
SPARK_APPS_DIR = REPO_ROOT / "spark_apps"

# Keys of JSON outputs that legitimately differ between two runs of the same application with the
# same arguments: wall-clock times, and the random id a vectors output is stamped with. The code
# version (a hash of the library's sources) is the same for both unless the source tree is edited
# while the tests run; the outputs are compared as data, so it is left out too.
VOLATILE_KEYS = frozenset({"created_at", "timings_seconds", "seconds", "write_id", "code_version"})
VOLATILE_SUFFIX = "_seconds"  # any measured duration (e.g. a kNN summary's kernel_task_seconds)
# Siblings that an interrupted publication leaves behind (nbknn.common.fs.temporary_sibling).
LEFTOVER_PREFIXES = ("_tmp-", "_replaced-")


# --- spark-submit, as LibrarySparkSubmitOperator runs it -------------------------------------------


def spark_environment(scratch: Path, extra_conf: dict | None = None) -> dict[str, str]:
    """Variables for the test process and for spark-submit: local[2] through the spark_default
    connection, the virtualenv's Python, Spark scratch space under ``scratch``."""
    conf = {
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.local.dir": str(scratch / "spark-local"),
        **(extra_conf or {}),
    }
    return {
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
        "NBKNN_SPARK_CONF": json.dumps(conf),
        "NBKNN_PYSPARK_PYTHON": str(VENV_BIN / "python"),
        "NBKNN_BUILD_DIR": str(scratch / "build"),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def spark_submit_command(script: str, args: list[str], name: str) -> list[str]:
    """The spark-submit argument list that ``nbknn_airflow.spark_submit.spark_app(...)`` runs:
    the provider's SparkSubmitHook builds it from the spark_default connection, the deployment's
    Spark conf, the zipped library (``--py-files``) and the tokeniser's scanner (``--jars``).
    Needs spark_environment() in os.environ."""
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    from nbknn_airflow import settings
    from nbknn_airflow.spark_submit import build_library_zip, default_spark_conf
    from nbknn_airflow.token_scanner import jars_value, token_scanner_jar

    hook = SparkSubmitHook(
        conf=default_spark_conf(),
        conn_id=settings.spark_conn_id(),
        py_files=str(build_library_zip()),
        jars=jars_value(token_scanner_jar()),
        name=name,
        application_args=list(args),
    )
    return hook._build_spark_submit_command(str(SPARK_APPS_DIR / script))


# Logged by the driver when its SparkContext starts: the end of spark-submit's start-up.
CONTEXT_STARTED = b"SparkContext: Running Spark version"


@dataclass
class Run:
    """One spark-submit: how it ended and when (seconds since it was started)."""

    returncode: int | None
    seconds: float
    killed_at: float | None = None
    log: str = ""
    context_at: float | None = None  # when the SparkContext started (None: not before the end)

    @property
    def killed(self) -> bool:
        return self.killed_at is not None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def run_spark_submit(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    cwd: Path,
    kill_after: float | None = None,
    timeout: float = 300,
) -> Run:
    """Run spark-submit in a process group of its own; with ``kill_after``, SIGKILL the whole group
    (spark-submit, the driver JVM, the Python driver and its Python workers) after that many seconds
    unless it has ended before. Fails if a process of the group survives the kill."""
    cwd.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    started = time.monotonic()
    process = start(command, env, log_path, cwd=cwd)
    killed_at = context_at = None
    try:
        deadline = started + (kill_after if kill_after is not None else timeout)
        while process.poll() is None and time.monotonic() < deadline:
            if context_at is None and _log_holds(log_path, offset, CONTEXT_STARTED):
                context_at = time.monotonic() - started
            time.sleep(0.02)
        if context_at is None and _log_holds(log_path, offset, CONTEXT_STARTED):
            context_at = time.monotonic() - started  # within the last poll interval
        if process.poll() is None:
            if kill_after is None:
                raise TimeoutError(f"{command[-1]} did not end within {timeout} s\n{log_tail(process)}")
            killed_at = time.monotonic() - started
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        # The group's other members die with it, but not necessarily before the leader is reaped.
        for _ in range(200):
            survivors = group_members(process.pid)
            if not survivors:
                break
            time.sleep(0.05)
        else:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"processes {survivors} of the killed group {process.pid} survived SIGKILL")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        process.log_file.close()
    return Run(process.returncode, time.monotonic() - started, killed_at, log_tail(process, 6000), context_at)


def _log_holds(path: Path, offset: int, marker: bytes) -> bool:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return marker in log.read()
    except FileNotFoundError:
        return False


# --- watching what readers can see while a run goes on ------------------------------------------------


class Watcher(threading.Thread):
    """Calls ``check()`` (a list of violations) every few milliseconds until stopped."""

    def __init__(self, check: Callable[[], list[str]], interval: float = 0.01):
        super().__init__(daemon=True)
        self.check, self.interval = check, interval
        self.violations: list[str] = []
        self.polls = 0
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                found = self.check()
            except Exception as exc:  # a bug in a check must fail the test, not end the thread quietly
                self.errors.append(f"{type(exc).__name__}: {exc}")
                found = []
            self.polls += 1
            for violation in found:
                if violation not in self.violations:
                    self.violations.append(violation)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
        # One last look at the state the run left.
        self.violations.extend(v for v in self.check() if v not in self.violations)


@dataclass
class DirSnapshot:
    names: set[str]
    children: dict[str, set[str]] = field(default_factory=dict)


def stable_listing(path: Path, subdirs: Iterable[str] = ()) -> DirSnapshot | None:
    """The names in ``path`` (and in some of its subdirectories), or None when ``path`` does not
    exist or was replaced while it was being read (a rename in or out: a reader that raced a
    publication, not a partial output). Content changed in place is reported as it is."""
    try:
        before = os.stat(path)
        names = set(os.listdir(path))
        children = {}
        for sub in subdirs:
            try:
                children[sub] = set(os.listdir(path / sub))
            except FileNotFoundError:
                children[sub] = set()
        after = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if (before.st_ino, before.st_dev) != (after.st_ino, after.st_dev):
        return None
    return DirSnapshot(names, children)


def published_dir_problems(path: Path, markers: tuple[str, ...] = ("_SUCCESS",)) -> list[str]:
    """A published output directory is either absent or complete: it holds its markers (Spark's
    ``_SUCCESS``, the job's ``_summary.json``), and its JSON files parse."""
    listing = stable_listing(path)
    if listing is None:
        return []
    problems = [f"{path} is visible without {marker}" for marker in markers if marker not in listing.names]
    for name in listing.names:
        # JSON documents (summaries, metrics), not Spark's JSON Lines part files.
        if name.endswith(".json") and not name.startswith("part-"):
            problems += json_file_problems(path / name)
    return problems


def json_file_problems(path: Path) -> list[str]:
    """A JSON file is absent or parses whole (atomic replacement)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    try:
        json.loads(text)
    except ValueError:
        return [f"{path} is visible half-written ({len(text)} bytes)"]
    return []


def model_problems(models_dir: Path) -> list[str]:
    """Every published model version is complete, and LATEST names a complete version."""
    problems = []
    try:
        entries = os.listdir(models_dir)
    except FileNotFoundError:
        return []
    for name in entries:
        if name.startswith(("_", ".")) or name == "LATEST":
            continue
        problems += version_problems(models_dir / name)
    latest = models_dir / "LATEST"
    try:
        version = latest.read_text()
    except FileNotFoundError:
        return problems
    if not version.endswith("\n") or not version.strip():
        return problems + [f"LATEST is visible half-written: {version!r}"]
    version_dir = models_dir / version.strip()
    if not version_dir.is_dir():
        problems.append(f"LATEST points at {version.strip()}, which is not published")
    return problems + version_problems(version_dir)


def version_problems(version_dir: Path) -> list[str]:
    """A model version directory: manifest.json and every table complete (each shard present)."""
    listing = stable_listing(version_dir, ("classes", "vocabulary", "term_counts"))
    if listing is None:
        return []
    if "manifest.json" not in listing.names:
        return [f"model {version_dir.name} is visible without manifest.json"]
    try:
        manifest = json.loads((version_dir / "manifest.json").read_text())
    except FileNotFoundError:  # renamed away since the listing: a republication, not a partial model
        return []
    except ValueError:
        return [f"model {version_dir.name}: manifest.json is visible half-written"]
    problems = []
    for table in ("classes", "vocabulary", "term_counts"):
        if "_SUCCESS" not in listing.children[table]:
            problems.append(f"model {version_dir.name}: {table}/ is incomplete")
    shards = {f"shard={entry['shard']}" for entry in manifest["shards"]}
    missing = shards - listing.children["term_counts"]
    if missing:
        problems.append(f"model {version_dir.name}: term_counts/ lacks {sorted(missing)}")
    return problems


def leftovers(root: Path) -> list[str]:
    """Temporary siblings that interrupted publications left anywhere under ``root``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            if name.startswith(LEFTOVER_PREFIXES) or (name.startswith(".") and name.endswith(".tmp")):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


# --- outputs by content ---------------------------------------------------------------------------------


def _canonical_value(value):
    """JSON-ready value with floats to 10 significant digits and volatile keys dropped."""
    if isinstance(value, float):
        return value if not math.isfinite(value) else float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _canonical_value(v) for k, v in value.items()
                if k not in VOLATILE_KEYS and not str(k).endswith(VOLATILE_SUFFIX)}
    if isinstance(value, (list, tuple)):
        return [_canonical_value(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _rows_key(row) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def canonical_output(path: Path) -> dict[str, tuple[str, object]]:
    """Everything a reader gets from an output (a file or a directory tree), by relative path:
    ("rows", sorted rows) for a Parquet or JSON Lines table, ("json", document) for a JSON file,
    ("bytes", sha of content) for anything else. Part-file names, Spark's markers, checksums and
    leftover temporary siblings are not content."""
    import hashlib

    import pyarrow.parquet as pq

    if not path.exists():
        return {}
    if path.is_file():
        return {".": _canonical_file(path)}
    result: dict[str, tuple[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(LEFTOVER_PREFIXES) and d != "_temporary")
        relative = os.path.relpath(dirpath, path)
        parquet = sorted(f for f in filenames if f.startswith("part-") and f.endswith(".parquet"))
        jsonl = sorted(f for f in filenames if f.startswith("part-") and ".json" in f)
        if parquet:
            rows = [_canonical_value(r) for f in parquet for r in pq.read_table(os.path.join(dirpath, f)).to_pylist()]
            result[relative] = ("rows", sorted(rows, key=_rows_key))
        elif jsonl:
            rows = [
                _canonical_value(json.loads(line))
                for f in jsonl
                # JSON Lines end at '\n' only: str.splitlines() would also split at U+2028 and the
                # like, which JSON strings may hold unescaped.
                for line in Path(dirpath, f).read_text(encoding="utf-8").split("\n")
                if line.strip()
            ]
            result[relative] = ("rows", sorted(rows, key=_rows_key))
        for name in sorted(filenames):
            if name.startswith("part-") or name == "_SUCCESS" or name.startswith("."):
                continue
            full = Path(dirpath, name)
            if name.endswith(".json"):
                result[os.path.join(relative, name)] = ("json", _canonical_value(json.loads(full.read_text())))
            else:
                result[os.path.join(relative, name)] = ("bytes", hashlib.sha256(full.read_bytes()).hexdigest())
    return result


def _canonical_file(path: Path) -> tuple[str, object]:
    if path.suffix == ".json":
        return ("json", _canonical_value(json.loads(path.read_text())))
    return ("text", path.read_text(errors="replace"))


@dataclass
class Comparison:
    """How an output compares with its reference."""

    differences: list[str]
    records: int  # rows in the reference tables
    lost: int  # reference rows missing from the output
    extra: int  # rows of the output that the reference does not have (duplicates included)


def compare_outputs(reference: dict, got: dict) -> Comparison:
    differences, records, lost, extra = [], 0, 0, 0
    for key in sorted(set(reference) | set(got)):
        if key not in got:
            differences.append(f"{key}: missing")
            if reference[key][0] == "rows":
                records += len(reference[key][1])
                lost += len(reference[key][1])
            continue
        if key not in reference:
            differences.append(f"{key}: not in the reference")
            continue
        kind, expected = reference[key]
        _, actual = got[key]
        if kind == "rows":
            want = Counter(_rows_key(r) for r in expected)
            have = Counter(_rows_key(r) for r in actual)
            records += len(expected)
            missing, surplus = sum((want - have).values()), sum((have - want).values())
            lost, extra = lost + missing, extra + surplus
            if missing or surplus:
                differences.append(f"{key}: {missing} of {len(expected)} rows missing, {surplus} extra")
        elif expected != actual:
            differences += [f"{key}: {d}" for d in json_differences(expected, actual)][:10]
    return Comparison(differences, records, lost, extra)


def json_differences(expected, actual, where: str = "") -> list[str]:
    """Where two JSON values differ, as 'path: expected != actual' lines."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual), key=str):
            if key not in actual or key not in expected:
                found.append(f"{where}.{key}: only in {'reference' if key in expected else 'output'}")
            else:
                found += json_differences(expected[key], actual[key], f"{where}.{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in json_differences(e, a, f"{where}[{i}]")]
    if expected != actual:
        return [f"{where or '.'}: {json.dumps(expected, default=str)[:200]} != {json.dumps(actual, default=str)[:200]}"]
    return []


def outputs_of(root: Path, relative_paths: Iterable[str]) -> dict[str, dict]:
    return {rel: canonical_output(root / rel) for rel in relative_paths}


def compare_all(reference: dict[str, dict], got: dict[str, dict]) -> Comparison:
    total = Comparison([], 0, 0, 0)
    for rel in reference:
        one = compare_outputs(reference[rel], got.get(rel, {}))
        total.differences += [f"{rel}/{d}" for d in one.differences]
        total.records += one.records
        total.lost += one.lost
        total.extra += one.extra
    return total


def copy_tree(source: Path, target: Path) -> None:
    """Replace ``target`` by a copy of ``source``."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=True)


def big_document_line(size: int, doc_id: str = "huge", label: str = "earn") -> str:
    """A valid JSON document whose text is ``size`` bytes of words of a small vocabulary."""
    import random

    words = ("market", "shares", "export", "grain", "profit", "crude", "dividend")
    rng = random.Random(50)
    text = " ".join(rng.choice(words) for _ in range(size // 6 + 1))[:size]
    return json.dumps({"id": doc_id, "label": label, "text": text})


def write_figures(name: str, figures: dict) -> Path:
    """Store a test's figures as build/reliability/<name>.json."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True, default=str) + "\n")
    return path


def run_command(command: list[str], env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# --- deterministic fault points: every commit step of an application, in process -------------------------


class InjectedKill(BaseException):
    """Raised at a fault point. A BaseException, so that no ``except Exception`` of the code under
    test can handle it: like a kill, it ends the run there."""


# The calls by which an application changes what is on disk: the Hadoop FileSystem operations of
# nbknn.common.fs (renames, atomic replacements of small files, deletions, directories, raw bytes)
# and Spark's DataFrameWriter (each staged or scratch table). Reads are not commit steps.
FS_COMMIT_CALLS = ("mkdirs", "delete", "rename", "_replace", "write_bytes")
WRITER_COMMIT_CALLS = ("parquet", "json", "text", "csv", "save")
_RANDOM_PART = re.compile(r"[0-9a-f]{12,32}")


@dataclass(frozen=True)
class CommitStep:
    operation: str  # "fs.rename", "DataFrameWriter.parquet", ...
    target: str  # what it changes, relative to the data root, random parts of names as '*'

    def __str__(self) -> str:
        return f"{self.operation}({self.target})"


class FaultPoints:
    """Records the commit steps of one in-process run of an application. With ``stop_at`` =
    (step index, "before" | "after"), it copies the data root to ``snapshot`` at that point and
    raises InjectedKill. The copy is what a SIGKILL at that point leaves: the calls are synchronous,
    so nothing of the steps before is still in flight and nothing after has started. With
    ``states_dir``, the run goes on to its end and keeps, under ``states_dir``, a copy of the data
    root at the first point of each distinct state (by fingerprint; states in ``exclude`` are not
    kept): what a run stopped at that point would leave, for the same reason, without running the
    application once more up to each point."""

    def __init__(self, root: Path, stop_at: tuple[int, str] | None = None, snapshot: Path | None = None,
                 states_dir: Path | None = None, exclude: Iterable[str] = ()):
        self.root, self.stop_at, self.snapshot, self.states_dir = root, stop_at, snapshot, states_dir
        self.steps: list[CommitStep] = []
        # fingerprint -> (the first point with that state, the copy of the data root there)
        self.kept: dict[str, tuple[tuple[int, str], Path]] = {}
        self._excluded = set(exclude)
        self.steps_at_fault: list[CommitStep] | None = None  # (what cleanup code does after it is not a step)
        if states_dir is not None and states_dir.exists():
            shutil.rmtree(states_dir)

    def _target(self, operation: str, args: tuple) -> str:
        uris = [a for a in args if isinstance(a, str) and "://" in a]
        text = " -> ".join(uris)
        return _RANDOM_PART.sub("*", text.replace(self.root.as_uri() + "/", ""))

    def _point(self, index: int, when: str) -> None:
        if self.states_dir is not None:
            fingerprint = tree_fingerprint(self.root)
            if fingerprint not in self._excluded and fingerprint not in self.kept:
                copy = self.states_dir / f"{len(self.kept)}-{when}-{index}"
                copy_tree(self.root, copy)
                self.kept[fingerprint] = ((index, when), copy)
        if self.stop_at == (index, when):
            self.steps_at_fault = list(self.steps)
            copy_tree(self.root, self.snapshot)
            raise InjectedKill(f"{when} {self.steps[index]}")

    def _wrap(self, operation: str, function: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            index = len(self.steps)
            self.steps.append(CommitStep(operation, self._target(operation, args)))
            self._point(index, "before")
            result = function(*args, **kwargs)
            self._point(index, "after")
            return result

        return wrapped

    def run(self, spark, script: str, argv: list[str]) -> None:
        """``run_entry_in_process`` with every commit step counted (and the fault injected)."""
        from pyspark.sql import DataFrameWriter

        from nbknn.common import fs

        with pytest.MonkeyPatch.context() as patch:
            for name in FS_COMMIT_CALLS:
                patch.setattr(fs, name, self._wrap(f"fs.{name}", getattr(fs, name)))
            for name in WRITER_COMMIT_CALLS:
                patch.setattr(DataFrameWriter, name, self._wrap(f"DataFrameWriter.{name}", getattr(DataFrameWriter, name)))
            run_entry_in_process(spark, script, argv)

    def call(self, function: Callable, kwargs: dict, module, names: Iterable[str]) -> None:
        """``function(**kwargs)`` with the calls ``module.<name>`` counted as its commit steps."""
        with pytest.MonkeyPatch.context() as patch:
            for name in names:
                patch.setattr(module, name, self._wrap(f"{module.__name__.rsplit('.', 1)[-1]}.{name}",
                                                       getattr(module, name)))
            function(**kwargs)


def tree_fingerprint(root: Path) -> str:
    """A digest of every file under ``root``: relative path and content. A directory being built
    (``_tmp-*``) counts by its name only: whatever it holds, no reader sees it and the next run
    builds its own, so states that differ only inside it are one state for a stopped run."""
    import hashlib

    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if os.path.basename(dirpath).startswith("_tmp-"):
            dirnames.clear()
            filenames = []
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
        digest.update(("D" + os.path.relpath(dirpath, root) + "\0" + "\0".join(dirnames)).encode())
    return digest.hexdigest()


# --- a SIGKILL while a Spark job runs ------------------------------------------------------------------------

# Logged by the driver when its web UI is up (before the application lowers its log level).
UI_STARTED = re.compile(rb"Successfully started service 'SparkUI' on port (\d+)")


@dataclass
class JobKill:
    """A spark-submit killed while its driver reported a running Spark job."""

    returncode: int | None
    seconds: float
    job: dict | None  # the running job the status API reported just before the kill
    reported_to_kill_s: float | None  # from that report to the SIGKILL
    log: str = ""


def kill_during_spark_job(command: list[str], env: dict[str, str], log_path: Path, cwd: Path,
                          timeout: float = 300) -> JobKill:
    """Run spark-submit in a process group of its own (the Spark conf must enable the UI) and SIGKILL
    the whole group as soon as the driver's REST status API
    (``/api/v1/applications/<id>/jobs?status=running``) reports a running job. The API is polled
    without pause over one connection: the jobs of a small application last a fraction of a
    second. When the application ends without such a report, ``job`` is None."""
    import http.client

    cwd.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    process = start(command, env, log_path, cwd=cwd)
    port = app_id = job = connection = None
    reported_to_kill = None

    def get(path: str):
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return json.loads(body) if response.status == 200 else None

    try:
        while process.poll() is None and time.monotonic() - started < timeout:
            if port is None:
                found = UI_STARTED.search(log_path.read_bytes()) if log_path.exists() else None
                if found is None:
                    time.sleep(0.01)
                    continue
                port = int(found.group(1))
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                if app_id is None:
                    app_id = ((get("/api/v1/applications") or [{}])[0]).get("id")
                    continue
                running = get(f"/api/v1/applications/{app_id}/jobs?status=running") or []
                if running:
                    reported = time.monotonic()
                    os.killpg(process.pid, signal.SIGKILL)
                    reported_to_kill = time.monotonic() - reported
                    job = {key: running[0].get(key) for key in ("jobId", "name", "numTasks", "numActiveTasks",
                                                                "numCompletedTasks", "status")}
                    break
            except (OSError, ValueError, http.client.HTTPException):
                # The UI is not serving yet (or not the status API yet), or already gone.
                if connection is not None:
                    connection.close()
                connection = None
                time.sleep(0.005)
        process.wait(timeout=60)
        for _ in range(200):
            survivors = group_members(process.pid)
            if not survivors:
                break
            time.sleep(0.05)
        else:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"processes {survivors} of the killed group {process.pid} survived SIGKILL")
    finally:
        if connection is not None:
            connection.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        process.log_file.close()
    return JobKill(process.returncode, time.monotonic() - started, job, reported_to_kill, log_tail(process, 6000))
