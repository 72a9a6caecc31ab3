"""The ``plan`` step of ``nb_predict``: resolve the model, check it is complete, compute every URI.

The model is resolved once, here, and pinned for the whole run: every Spark task receives the
model directory itself, never "latest", so a model published while the run is going cannot mix
into it. The plan reads only the small ``LATEST`` pointer and the manifest (through ``storage``).
"""

from __future__ import annotations

from collections.abc import Sequence

from nbknn import contract
from nbknn_airflow import param_schemas, paths, settings, storage
from nbknn_airflow.plans.base import NothingToDo, PlanError, check_params, input_args, resolve_input

LATEST = "latest"


def version_from_events(extras: Sequence[dict]) -> str | None:
    """The model version of the most recent model event (extras in time order), if any."""
    for extra in reversed(list(extras)):
        version = (extra or {}).get("version")
        if version:
            return str(version)
    return None


def resolve_model_version(
    requested: str, root: str, triggered_version: str | None = None, run_type: str = "manual"
) -> tuple[str, str]:
    """(version, how it was chosen). "latest" means the event's model when the run was triggered by
    a model publication (the model that triggered it, even if a newer one appeared since), else LATEST.
    With no model published yet, a scheduled run has nothing to do; any other run is refused."""
    if not isinstance(requested, str):
        raise PlanError(f"model_version must be a string (got {requested!r})")
    requested = requested.strip()
    if requested.lower() != LATEST:
        try:
            return paths.check_version_name(requested), "requested"
        except paths.PathError as exc:
            raise PlanError(str(exc)) from None
    if triggered_version:
        try:
            return paths.check_version_name(triggered_version), "asset event"
        except paths.PathError as exc:
            raise PlanError(f"the triggering model event names an invalid version: {exc}") from None
    latest_uri = paths.nb_latest_uri(root)
    try:
        version = storage.read_text(latest_uri).strip()
    except FileNotFoundError:
        message = f"no Naive Bayes model has been published yet ({latest_uri} does not exist)"
        if str(run_type).lower() == "scheduled":
            raise NothingToDo(f"{message}: nothing to score with") from None
        raise PlanError(f"{message}: run nb_train first") from None
    try:
        return paths.check_version_name(version), "LATEST"
    except paths.PathError as exc:
        raise PlanError(f"{latest_uri} does not hold a valid model version: {exc}") from None


def load_manifest(version_dir: str) -> dict:
    """The model's manifest, checked for what the prediction tasks rely on."""
    uri = paths.nb_manifest_uri(version_dir)
    try:
        manifest = storage.read_json(uri)
    except FileNotFoundError:
        raise PlanError(
            f"model {version_dir} has no manifest ({uri}): it does not exist or was not published completely"
        ) from None
    problems = []
    if manifest.get("kind") != "naive_bayes":
        problems.append(f"kind is {manifest.get('kind')!r}, expected 'naive_bayes'")
    num_shards = manifest.get("num_shards")
    shards = manifest.get("shards") or []
    if not isinstance(num_shards, int) or num_shards < 1:
        problems.append(f"num_shards must be an integer >= 1 (got {num_shards!r})")
    elif [entry.get("shard") for entry in shards] != list(range(num_shards)):
        problems.append(f"shards must be numbered 0..{num_shards - 1} (got {[e.get('shard') for e in shards]})")
    if (manifest.get("model") or {}).get("type") not in contract.MODEL_TYPES:
        problems.append(f"unknown model type {(manifest.get('model') or {}).get('type')!r}")
    if problems:
        raise PlanError(f"model manifest {uri} is not usable: " + "; ".join(problems))
    missing = [
        entry["shard"]
        for entry in shards
        if not storage.exists(contract.term_counts_shard_uri(version_dir, entry["shard"]))
    ]
    if missing:
        raise PlanError(f"model {version_dir} is incomplete: no term counts for shard(s) {missing}")
    return manifest


def plan_prediction(
    params: dict, run_id: str, triggered_version: str | None = None, run_type: str = "manual",
    run_date: str | None = None,
) -> dict:
    """Everything an ``nb_predict`` run reads and writes, and the arguments of its Spark applications.

    ``run_date`` (ISO 8601: the logical date of a scheduled run, else when the run was triggered)
    dates the run's row in the quality history, which the application that writes the report
    adds when the input has labels (``uris["quality_history"]``, one row per run key).

    ``path`` says which way the run predicts (:func:`nbknn.contract.choose_prediction_path`):
    ``single_pass_args`` are the one application's arguments; otherwise ``vectorize_args``,
    ``shard_args`` (one argument list per model shard: the DAG maps the prediction pass over it)
    and ``combine_args``.
    """
    root = settings.data_root()
    params = {**param_schemas.NB_PREDICT_DEFAULTS, **params}
    input_uri = resolve_input(params["input_uri"], settings.input_roots())
    top_n = _check_prediction_params(params)
    top_terms = ["--top-terms", str(params["top_terms"])]
    version, chosen_by = resolve_model_version(params["model_version"], root, triggered_version, run_type)
    version_dir = paths.nb_version_dir(root, version)
    manifest = load_manifest(version_dir)

    path, path_reason = contract.choose_prediction_path(
        manifest, params["prediction_path"], params["single_pass_max_bytes"]
    )

    key = paths.run_key(run_id)
    layout = paths.nb_prediction_layout(root, key)
    rejects = paths.rejects_dir(root, "nb_predict", key)
    model_args = ["--model-dir", version_dir, "--vectors", layout["vectors"]]
    reject_args = ["--rejects", rejects, "--max-reject-fraction", str(params["max_reject_fraction"])]
    history = contract.quality_history_uri(root)
    history_args = ["--quality-history", history, "--run-key", key, *(["--run-date", run_date] if run_date else [])]
    return {
        "run_key": key,
        "model": {
            "version": version,
            "chosen_by": chosen_by,
            "dir": version_dir,
            "type": manifest["model"]["type"],
            "num_shards": manifest["num_shards"],
            "classes": manifest.get("counts", {}).get("classes"),
        },
        "uris": {"input": input_uri, "rejects": rejects, **layout, "quality_history": history},
        "path": {"name": path, "reason": path_reason},
        # Flat keys: each is pushed as its own XCom (multiple_outputs) for a Spark task's arguments.
        "single_pass_args": [
            *input_args(params, input_uri),
            "--model-dir", version_dir,
            "--predictions", layout["predictions"],
            "--report", layout["report"],
            *reject_args,
            "--top-n", str(top_n),
            *top_terms,
            "--path-reason", path_reason,
            *history_args,
        ],
        "vectorize_args": [
            *input_args(params, input_uri),
            "--model-dir", version_dir,
            "--vectors", layout["vectors"],
            *reject_args,
        ],
        "shard_args": _shard_args(model_args, manifest, layout["scores"], top_n, top_terms),
        "combine_args": [
            *model_args,
            "--scores", layout["scores"],
            "--predictions", layout["predictions"],
            "--report", layout["report"],
            "--top-n", str(top_n),
            *top_terms,
            *history_args,
        ],
    }


def _check_prediction_params(params: dict) -> int:
    """The Params against their schemas; returns top_n."""
    top_n = params["top_n"]
    if isinstance(top_n, int) and top_n < 0:
        raise PlanError(f"top_n must be >= 0 (got {top_n})")
    # model_version is checked by resolve_model_version (with the pattern in its message).
    check_params(params, {k: v for k, v in param_schemas.NB_PREDICT.items() if k != "model_version"})
    return int(top_n)


def _shard_args(model_args: list[str], manifest: dict, scores_dir: str, top_n: int,
                top_terms: list[str]) -> list[list[str]]:
    """One argument list per model shard, for the mapped prediction pass."""
    return [
        [
            *model_args,
            "--shard", str(entry["shard"]),
            "--scores", contract.scores_shard_uri(scores_dir, entry["shard"]),
            "--top-n", str(top_n),
            *top_terms,
        ]
        for entry in manifest["shards"]
    ]
