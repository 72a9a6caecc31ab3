"""The ``plan`` step of each DAG: validate a run's parameters and compute every URI and argument.

A plan is plain JSON (it travels through XCom); the Spark tasks take their argument lists from it
unchanged, so what a run will do can be read in the plan task's XCom before any Spark job starts.
Param JSON schemas catch types and ranges when a run is triggered; the checks here are the ones a
schema cannot express (paths confined to the data roots, a compiling token pattern, exclusive knobs).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import unquote, urlparse

import regex

from nbknn_airflow import param_schemas, paths, settings, storage

# nb_train's modes. ``auto``: scheduled and backfill runs fold their data interval's partition into
# the latest model (incremental); runs triggered by hand retrain on the whole input (full).
TRAIN_MODES = ("auto", "full", "incremental")
INCREMENTAL_RUN_TYPES = ("scheduled", "backfill")


class PlanError(ValueError):
    """Parameters that the run refuses before any Spark job starts."""


def check_params(params: dict, schemas: dict[str, dict], optional: tuple[str, ...] = ()) -> None:
    """The run's parameters against the DAG's Param schemas (see param_schemas), as a PlanError."""
    try:
        param_schemas.check_params(params, schemas, optional)
    except param_schemas.ParamError as exc:
        raise PlanError(str(exc)) from None


def _check_token_pattern(pattern: str) -> None:
    if not isinstance(pattern, str):
        raise PlanError(f"token_pattern must be a string (got {pattern!r})")
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        raise PlanError(f"token_pattern does not compile: {pattern!r} ({exc})") from None
    if compiled.fullmatch(""):
        raise PlanError(f"token_pattern must not match the empty string (got {pattern!r})")


def input_args(params: dict, input_uri: str) -> list[str]:
    return [
        "--input", input_uri,
        "--format", params["input_format"],
        "--id-column", params["id_column"],
        "--label-column", params["label_column"],
        "--text-column", params["text_column"],
        "--max-record-bytes", str(params["max_record_bytes"]),
    ]


def resolve_mode(mode: str, run_type: str) -> str:
    """``full`` or ``incremental``: ``auto`` is incremental for scheduled and backfill runs only."""
    if mode not in TRAIN_MODES:
        raise PlanError(f"mode must be one of {TRAIN_MODES} (got {mode!r})")
    if mode == "auto":
        return "incremental" if str(run_type).lower() in INCREMENTAL_RUN_TYPES else "full"
    return mode


def partition_name(partition_format: str, interval_start: datetime | None) -> str:
    """The input partition of a data interval: ``partition_format`` (strftime) of its start, in UTC."""
    if interval_start is None:
        raise PlanError(
            "incremental training reads the partition of the run's data interval, and this run has "
            "none: trigger it with a logical date, or use mode=full"
        )
    if "%" not in partition_format:
        raise PlanError(f"partition_format must format the interval's date, e.g. 'date=%Y-%m-%d' (got {partition_format!r})")
    start = interval_start.astimezone(timezone.utc) if interval_start.tzinfo else interval_start
    name = start.strftime(partition_format).strip("/")
    try:
        if not name:
            raise paths.PathError("it is empty")
        paths.join("file:///", name)
    except paths.PathError as exc:
        raise PlanError(f"partition_format {partition_format!r} gives an invalid folder name: {exc}") from None
    return name


def _folder(uri: str) -> str:
    """Canonical spelling of a folder URI (the Spark side's nbknn.nb_merge.folder_uri does the same)."""
    parsed = urlparse(uri)
    path = unquote(parsed.path).rstrip("/") or "/"
    return f"{parsed.scheme}://{parsed.netloc}{path}" if parsed.scheme else path


def _overlaps(a: str, b: str) -> bool:
    a, b = _folder(a), _folder(b)
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _read_manifest(root: str, version: str) -> dict:
    uri = paths.nb_manifest_uri(paths.nb_version_dir(root, paths.check_version_name(version)))
    if not storage.exists(uri):
        raise PlanError(f"base model {version} has no manifest at {uri}")
    return storage.read_json(uri)


def resolve_base(root: str, run_id: str, base_version: str | None) -> dict | None:
    """The model an incremental run adds its counts to: ``base_version``, else the LATEST one.

    A model that this very run published (its tasks were cleared and are running again) is not a
    base: the run rebuilds its own version from that model's parent, so a retry neither fails nor
    counts its partition twice. Returns None when there is no base (the run trains from scratch).
    """
    if not base_version:
        latest_uri = paths.nb_latest_uri(root)
        if not storage.exists(latest_uri):
            return None
        base_version = storage.read_text(latest_uri).strip()
    try:
        manifest = _read_manifest(root, base_version)
    except paths.PathError as exc:
        raise PlanError(str(exc)) from None
    lineage = manifest.get("lineage") or {}
    if lineage.get("run_id") == run_id:
        parent = lineage.get("parent_version")
        if parent is None:
            return None
        manifest = _read_manifest(root, parent)
    return {"version": manifest["version"], "dir": paths.nb_version_dir(root, manifest["version"]), "manifest": manifest}


def _check_base(base: dict, partition_uri: str, params: dict) -> None:
    """Refuse early what the merge job would refuse (it checks again, on what it actually reads)."""
    manifest = base["manifest"]
    tokenizer = {"pattern": params["token_pattern"], "lowercase": params["lowercase"]}
    if manifest["tokenizer"] != tokenizer:
        raise PlanError(
            f"base model {base['version']} was tokenised with {manifest['tokenizer']}, this run would use "
            f"{tokenizer}: counts of different tokens cannot be added (run mode=full instead)"
        )
    if manifest.get("min_term_count", 1) != 1:
        raise PlanError(
            f"base model {base['version']} dropped rare terms (min_term_count={manifest['min_term_count']}); "
            "their counts are lost, so it cannot be a base for incremental training"
        )
    for entry in (manifest.get("lineage") or {}).get("partitions", []):
        if _overlaps(entry["uri"], partition_uri):
            raise PlanError(
                f"partition {partition_uri} is already part of model {base['version']}: {entry['uri']} was "
                f"folded in by model version {entry.get('version')} (run {entry.get('run_id')}); "
                "folding it again would count its documents twice"
            )


def plan_training(
    params: dict,
    run_id: str,
    run_after: datetime,
    run_type: str = "manual",
    data_interval: tuple[datetime | None, datetime | None] = (None, None),
) -> dict:
    """Everything an ``nb_train`` run reads and writes, and the arguments of its Spark applications.

    ``full`` mode counts all of ``input_uri``. ``incremental`` mode counts only the partition of
    the run's data interval (``input_uri``/``partition_format``), as a delta model inside the
    staging directory, and adds it to the base model (the ``merge`` task); with no base model
    yet it counts the partition as a full run would.
    """
    root = settings.data_root()
    try:
        input_uri = paths.resolve_input(params["input_uri"], settings.input_roots())
    except paths.PathError as exc:
        raise PlanError(str(exc)) from None
    _check_token_pattern(params["token_pattern"])
    mode = resolve_mode(params.get("mode", "auto"), run_type)
    partition = base = None
    if mode == "incremental":
        if params["min_term_count"] != 1:
            raise PlanError(
                f"incremental training needs min_term_count=1 (got {params['min_term_count']}): pruned "
                "counts cannot be added up later"
            )
        partition = partition_name(params.get("partition_format", "date=%Y-%m-%d"), data_interval[0])
        input_uri = paths.join(input_uri, partition)
        base = resolve_base(root, run_id, params.get("base_version"))
        if base is not None:
            _check_base(base, input_uri, params)
    # After the checks above, whose messages say more than a schema's.
    check_params(params, param_schemas.NB_TRAIN, optional=("mode", "base_version", "partition_format"))
    if params["max_entries_per_shard"] is not None:
        shard_args = ["--max-entries-per-shard", str(params["max_entries_per_shard"])]
    else:
        shard_args = ["--num-shards", str(params["num_shards"])]

    key = paths.run_key(run_id)
    version = paths.model_version(run_after, run_id)
    staging_dir = paths.nb_staging_dir(root, version)
    version_dir = paths.nb_version_dir(root, version)
    rejects = paths.rejects_dir(root, "nb_train", key)
    common_input_args = input_args(params, input_uri)
    # The tables of the new data go to a delta model inside the staging directory's scratch space
    # (nbknn.model_layout.work_uri), which publishing deletes.
    delta_dir = paths.join(staging_dir, "_work", "delta")
    count_dir = delta_dir if base is not None else staging_dir
    lineage = {
        "run_id": run_id,
        "mode": mode,
        "inputs": [input_uri],
        "parent_version": base["version"] if base else None,
        "data_interval": [d.isoformat() if d else None for d in data_interval],
    }
    return {
        "run_key": key,
        "version": version,
        "uris": {
            "input": input_uri,
            "rejects": rejects,
            "staging_dir": staging_dir,
            "version_dir": version_dir,
            "manifest": paths.nb_manifest_uri(version_dir),
            "latest": paths.nb_latest_uri(root),
            # Incremental runs with a base: the model added to, and the new partition's counts.
            **({"base_dir": base["dir"], "delta_dir": delta_dir} if base is not None else {}),
        },
        "mode": mode,
        "partition": partition,
        "base_version": base["version"] if base else None,
        "merge": base is not None,
        # Flat keys: each is pushed as its own XCom (multiple_outputs) for a Spark task's arguments.
        "class_prior_args": [
            *common_input_args,
            "--model-dir", count_dir,
            "--rejects", rejects,
            "--max-reject-fraction", str(params["max_reject_fraction"]),
        ],
        "term_counts_args": [
            *common_input_args,
            "--model-dir", count_dir,
            "--token-pattern", params["token_pattern"],
            "--lowercase" if params["lowercase"] else "--no-lowercase",
            "--min-term-count", str(params["min_term_count"]),
            # A delta is never published: one shard; the merge plans the model's shards.
            *(["--num-shards", "1"] if base is not None else shard_args),
        ],
        # Empty in full mode (the merge task is skipped).
        "merge_args": [
            "--base-dir", base["dir"],
            "--delta-dir", delta_dir,
            "--model-dir", staging_dir,
            *shard_args,
        ] if base is not None else [],
        "publish_args": [
            "--staging-dir", staging_dir,
            "--version-dir", version_dir,
            "--latest", paths.nb_latest_uri(root),
            "--version", version,
            "--model-type", params["model_type"],
            "--alpha", repr(float(params["alpha"])),
            "--fit-prior" if params["fit_prior"] else "--no-fit-prior",
            "--lineage", json.dumps(lineage, sort_keys=True),
        ],
    }
