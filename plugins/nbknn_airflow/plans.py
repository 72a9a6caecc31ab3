"""The ``plan`` step of each DAG: validate a run's parameters and compute every URI and argument.

A plan is plain JSON (it travels through XCom); the Spark tasks take their argument lists from it
unchanged, so what a run will do can be read in the plan task's XCom before any Spark job starts.
Param JSON schemas catch types and ranges when a run is triggered; the checks here are the ones a
schema cannot express (paths confined to the data roots, a compiling token pattern, exclusive knobs).
"""

from __future__ import annotations

import json
from datetime import datetime

import regex

from nbknn_airflow import paths, settings


class PlanError(ValueError):
    """Parameters that the run refuses before any Spark job starts."""


def _check_token_pattern(pattern: str) -> None:
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        raise PlanError(f"token_pattern does not compile: {pattern!r} ({exc})") from None
    if compiled.fullmatch(""):
        raise PlanError(f"token_pattern must not match the empty string (got {pattern!r})")


def _input_args(params: dict, input_uri: str) -> list[str]:
    return [
        "--input", input_uri,
        "--format", params["input_format"],
        "--id-column", params["id_column"],
        "--label-column", params["label_column"],
        "--text-column", params["text_column"],
        "--max-record-bytes", str(params["max_record_bytes"]),
    ]


def plan_training(params: dict, run_id: str, run_after: datetime) -> dict:
    """Everything an ``nb_train`` run reads and writes, and the arguments of its Spark applications."""
    root = settings.data_root()
    try:
        input_uri = paths.resolve_input(params["input_uri"], settings.input_roots())
    except paths.PathError as exc:
        raise PlanError(str(exc)) from None
    _check_token_pattern(params["token_pattern"])
    if params["max_entries_per_shard"] is not None:
        shard_args = ["--max-entries-per-shard", str(params["max_entries_per_shard"])]
    else:
        shard_args = ["--num-shards", str(params["num_shards"])]

    key = paths.run_key(run_id)
    version = paths.model_version(run_after, run_id)
    staging_dir = paths.nb_staging_dir(root, version)
    version_dir = paths.nb_version_dir(root, version)
    rejects = paths.rejects_dir(root, "nb_train", key)
    input_args = _input_args(params, input_uri)
    lineage = {"run_id": run_id, "inputs": [input_uri], "parent_version": None}
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
        },
        # Flat keys: each is pushed as its own XCom (multiple_outputs) for a Spark task's arguments.
        "class_prior_args": [
            *input_args,
            "--model-dir", staging_dir,
            "--rejects", rejects,
            "--max-reject-fraction", str(params["max_reject_fraction"]),
        ],
        "term_counts_args": [
            *input_args,
            "--model-dir", staging_dir,
            "--token-pattern", params["token_pattern"],
            "--lowercase" if params["lowercase"] else "--no-lowercase",
            "--min-term-count", str(params["min_term_count"]),
            *shard_args,
        ],
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
