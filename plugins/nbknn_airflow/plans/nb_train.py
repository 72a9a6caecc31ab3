"""nb_train's ``plan`` step: the training mode, the input partition, the base model, every URI."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import unquote, urlparse

from nbknn import contract
from nbknn_airflow import param_schemas, paths, settings, storage
from nbknn_airflow.param_schemas import TRAIN_MODES
from nbknn_airflow.plans.base import (
    NothingToDo,
    PlanError,
    check_params,
    check_token_pattern,
    input_args,
    resolve_input,
)

INCREMENTAL_RUN_TYPES = ("scheduled", "backfill")


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
    """Canonical spelling of a folder URI (the Spark side's nbknn.naive_bayes.merge.folder_uri does the same)."""
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
    tokenizer = contract.tokenizer_record(params["token_pattern"], params["lowercase"], params["normalization"])
    if not contract.same_tokenizer(manifest["tokenizer"], tokenizer):
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
    params = {**param_schemas.NB_TRAIN_DEFAULTS, **params}
    root = settings.data_root()
    input_uri = resolve_input(params["input_uri"], settings.input_roots())
    check_token_pattern(params["token_pattern"])
    mode = resolve_mode(params.get("mode", "auto"), run_type)
    partition = base = None
    if mode == "incremental":
        partition, input_uri, base = _incremental_input(params, root, run_id, input_uri, data_interval[0])
        _require_partition(input_uri, partition, run_type)
    selection = _selection_on(params, mode, base)
    # After the checks above, whose messages say more than a schema's.
    check_params(params, param_schemas.NB_TRAIN, optional=("mode", "base_version", "partition_format"))

    version = paths.model_version(run_after, run_id)
    uris = _training_uris(root, run_id, version, input_uri, base)
    lineage = {
        "run_id": run_id,
        "mode": mode,
        "inputs": [input_uri],
        "parent_version": base["version"] if base else None,
        "data_interval": [d.isoformat() if d else None for d in data_interval],
    }
    return {
        "run_key": paths.run_key(run_id),
        "version": version,
        "uris": uris,
        "mode": mode,
        "partition": partition,
        "base_version": base["version"] if base else None,
        "merge": base is not None,
        "selection": selection,
        # Flat keys: each is pushed as its own XCom (multiple_outputs) for a Spark task's arguments.
        **_counting_args(params, uris, selection),
        "select_args": _select_args(params, uris) if selection else [],
        **_model_args(params, uris, version, lineage, selection),
    }


def _selection_on(params: dict, mode: str, base: dict | None) -> bool:
    """Whether the run selects its model's parameters by k-fold cross-validation. An incremental
    run with a base model adds its per-fold counts to the base's, so the base must keep them, for
    the same folds (a document's fold depends on their number)."""
    if params["selection"] != "kfold":
        return False
    if mode == "incremental" and base is not None:
        problem = contract.fold_counts_problem(base["manifest"], params["folds"])
        if problem:
            raise PlanError(f"selection=kfold in an incremental run: {problem}")
    return True


def _select_args(params: dict, uris: dict) -> list[str]:
    """Arguments of the selection job (nb_select.py), which reads the staged model and the input;
    in an incremental run also the base model (its per-fold counts, and its documents again)."""
    return [
        *input_args(params, uris["input"]),
        "--model-dir", uris["staging_dir"],
        "--folds", str(params["folds"]),
        "--alphas", ",".join(repr(float(a)) for a in params["alpha_grid"]),
        "--model-types", ",".join(params["model_type_grid"]),
        "--fit-priors", ",".join("true" if p else "false" for p in params["fit_prior_grid"]),
        "--metric", params["selection_metric"],
        *(["--base-dir", uris["base_dir"]] if "base_dir" in uris else []),
    ]


def _incremental_input(
    params: dict, root: str, run_id: str, input_uri: str, interval_start: datetime | None
) -> tuple[str, str, dict | None]:
    """(partition, its URI, base model or None) of an incremental run, refusing what cannot be added up."""
    if params["min_term_count"] != 1:
        raise PlanError(
            f"incremental training needs min_term_count=1 (got {params['min_term_count']}): pruned "
            "counts cannot be added up later"
        )
    partition = partition_name(params.get("partition_format", "date=%Y-%m-%d"), interval_start)
    partition_uri = paths.join(input_uri, partition)
    base = resolve_base(root, run_id, params.get("base_version"))
    if base is not None:
        _check_base(base, partition_uri, params)
    return partition, partition_uri, base


def _require_partition(partition_uri: str, partition: str, run_type: str) -> None:
    """An incremental run's partition must hold data: a scheduled or backfill run without it has
    nothing to count (skipped); one triggered by hand is refused, naming the URI."""
    if storage.holds_data(partition_uri):
        return
    message = f"no labelled data for {partition} at {partition_uri}"
    if str(run_type).lower() in INCREMENTAL_RUN_TYPES:
        raise NothingToDo(f"{message}: nothing to train on for this interval")
    raise PlanError(f"{message} (the partition of this run's data interval)")


def _training_uris(root: str, run_id: str, version: str, input_uri: str, base: dict | None) -> dict:
    staging_dir = paths.nb_staging_dir(root, version)
    version_dir = paths.nb_version_dir(root, version)
    uris = {
        "input": input_uri,
        "rejects": paths.rejects_dir(root, "nb_train", paths.run_key(run_id)),
        "staging_dir": staging_dir,
        "version_dir": version_dir,
        "manifest": paths.nb_manifest_uri(version_dir),
        "latest": paths.nb_latest_uri(root),
    }
    if base is not None:
        # The model added to, and the new partition's counts: a delta model in the staging
        # directory's scratch space (nbknn.contract.work_uri), which publishing deletes.
        uris.update(base_dir=base["dir"], delta_dir=paths.join(staging_dir, "_work", "delta"))
    return uris


def _shard_args(params: dict) -> list[str]:
    if params["max_entries_per_shard"] is not None:
        return ["--max-entries-per-shard", str(params["max_entries_per_shard"])]
    return ["--num-shards", str(params["num_shards"])]


def _report_args(params: dict) -> list[str]:
    """The model's report (each class's top terms) at the run's alpha, written by the job that
    leaves the model's final counts: term_counts, or merge when incremental (selection writes its own)."""
    return ["--report-alpha", repr(float(params["alpha"]))]


def _counting_args(params: dict, uris: dict, selection: bool) -> dict[str, list[str]]:
    """Arguments of class_prior and term_counts, which count into the delta model when there is a base."""
    merging = "delta_dir" in uris
    count_dir = uris["delta_dir"] if merging else uris["staging_dir"]
    common_input_args = input_args(params, uris["input"])
    return {
        "class_prior_args": [
            *common_input_args,
            "--model-dir", count_dir,
            "--rejects", uris["rejects"],
            "--max-reject-fraction", str(params["max_reject_fraction"]),
        ],
        "term_counts_args": [
            *common_input_args,
            "--model-dir", count_dir,
            "--token-pattern", params["token_pattern"],
            "--lowercase" if params["lowercase"] else "--no-lowercase",
            "--normalization", params["normalization"],
            "--min-term-count", str(params["min_term_count"]),
            # A delta is never published: one shard; the merge plans the model's shards.
            *(["--num-shards", "1"] if merging else _shard_args(params)),
            *([] if merging or selection else _report_args(params)),
        ],
    }


def _model_args(params: dict, uris: dict, version: str, lineage: dict, selection: bool) -> dict[str, list[str]]:
    """Arguments of merge (empty in full mode: the merge task is skipped) and publish (for the
    Airflow task, and for the Spark application that does the same)."""
    merge_args = []
    if "delta_dir" in uris:
        merge_args = [
            "--base-dir", uris["base_dir"],
            "--delta-dir", uris["delta_dir"],
            "--model-dir", uris["staging_dir"],
            *_shard_args(params),
            # With selection, the selection job (after merge) writes the report at the chosen alpha.
            *([] if selection else _report_args(params)),
        ]
    return {
        "merge_args": merge_args,
        # The publish task's keyword arguments (nbknn_airflow.model_publish.publish_model, no Spark).
        "publish": {
            "staging_dir": uris["staging_dir"],
            "version_dir": uris["version_dir"],
            "latest_uri": uris["latest"],
            "version": version,
            "model_type": params["model_type"],
            "alpha": float(params["alpha"]),
            "fit_prior": bool(params["fit_prior"]),
            "lineage": lineage,
            "selection": selection,
        },
        # The same, as the arguments of the Spark application nb_publish_model.py.
        "publish_args": [
            "--staging-dir", uris["staging_dir"],
            "--version-dir", uris["version_dir"],
            "--latest", uris["latest"],
            "--version", version,
            "--model-type", params["model_type"],
            "--alpha", repr(float(params["alpha"])),
            "--fit-prior" if params["fit_prior"] else "--no-fit-prior",
            "--lineage", json.dumps(lineage, sort_keys=True),
            *(["--selection"] if selection else []),
        ],
    }
