"""The contract between the Airflow side and the Spark applications: one place for each shared fact.

Both sides import this module (the DAGs' plans and report tasks, and the applications), so it
imports neither pyspark nor Airflow: names of the model types, kNN modes and metrics, the layout of
every output below the directory a plan chose, the exit code of a refused run, the default memory
budgets, and the summaries that the applications write and the report tasks read.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields

import regex

# --- exit codes ------------------------------------------------------------------------------

# An application exits with this code when it refuses its input or arguments (sysexits.h's EX_DATAERR):
# retrying cannot help, so the Airflow task fails at once.
NOT_RETRYABLE_EXIT_CODE = 65
# argparse's exit code for bad arguments: not retryable either.
BAD_ARGUMENTS_EXIT_CODE = 2
NOT_RETRYABLE_EXIT_CODES = (BAD_ARGUMENTS_EXIT_CODE, NOT_RETRYABLE_EXIT_CODE)
# Where an application that refuses its input also writes its one-line reason (``nbknn: <Error>:
# ...``), so that the Airflow task can fail with that line first instead of a Java stack trace.
ERROR_FILE_ENV = "NBKNN_ERROR_FILE"

MIB = 1024 * 1024


def join_uri(base: str, *parts: str) -> str:
    """``base/part/...`` with one '/' between parts; the parts are names this module or a plan chose."""
    return "/".join([base.rstrip("/"), *(part.strip("/") for part in parts)])


# A small file (a summary, a manifest, LATEST) is written whole under a hidden temporary name
# beside it, then renamed over it; both writers (nbknn.common.fs on the Spark side,
# nbknn_airflow.model_publish on the Airflow side) name and recognise these files the same way.
def small_file_temp_name(name: str, token: str) -> str:
    """The temporary name of one write of the small file ``name``; ``token`` is 32 hex digits."""
    return f".{name}.{token}.tmp"


def is_small_file_temp(entry: str, name: str) -> bool:
    """Whether ``entry`` is the temporary file of a write of the small file ``name``."""
    return bool(regex.fullmatch(rf"\.{regex.escape(name)}\.[0-9a-f]{{32}}\.tmp", entry))


# --- inputs ------------------------------------------------------------------------------------

DOCUMENT_FORMATS = ("jsonl", "parquet", "tsv")
VECTOR_FORMATS = ("jsonl", "parquet")
# Records larger than this are quarantined rather than tokenised: one runaway document would
# otherwise have to fit into a single task's memory several times over.
DEFAULT_MAX_RECORD_BYTES = 8 * MIB
DEFAULT_MAX_REJECT_FRACTION = 0.01


# --- tokenisation --------------------------------------------------------------------------------

# Runs of two or more letters, marks or digits (single characters are dropped, as scikit-learn's
# default pattern does); apostrophes and other punctuation split tokens.
DEFAULT_TOKEN_PATTERN = r"[\p{L}\p{M}\p{N}]{2,}"
# Unicode normalisation before lowercasing: none, or the composed forms (NFKC also folds
# compatibility variants: ligatures, full-width letters, superscripts).
NORMALIZATIONS = ("none", "NFC", "NFKC")
DEFAULT_NORMALIZATION = "none"
# The tokeniser's Unicode version (nbknn.inputs.unicode_table); recorded in the model manifest.
TOKEN_UNICODE_VERSION = "13.0"


def tokenizer_record(pattern: str, lowercase: bool, normalization: str = DEFAULT_NORMALIZATION) -> dict:
    """A tokeniser as the model manifest records it (nbknn.inputs.tokenizer.TokenizerConfig.to_dict)."""
    return {"pattern": pattern, "lowercase": lowercase, "normalization": normalization,
            "unicode_version": TOKEN_UNICODE_VERSION}


def same_tokenizer(recorded: dict, other: dict) -> bool:
    """Whether two manifest tokeniser records cut the same tokens; a record from before the
    normalisation and Unicode-version fields has the defaults (what the tokeniser did then)."""
    defaults = {"normalization": DEFAULT_NORMALIZATION, "unicode_version": TOKEN_UNICODE_VERSION}
    return {**defaults, **recorded} == {**defaults, **other}


def token_pattern_problem(pattern, name: str = "token pattern") -> str | None:
    """Why ``pattern`` cannot tokenise (not a string, empty, does not compile, matches ''), or None."""
    if not isinstance(pattern, str):
        return f"{name} must be a string (got {pattern!r})"
    if not pattern:
        return f"{name} must not be empty"
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        return f"{name} does not compile: {pattern!r} ({exc})"
    if compiled.fullmatch(""):
        return f"{name} must not match the empty string (got {pattern!r})"
    return None


# --- Naive Bayes models ------------------------------------------------------------------------

MODEL_TYPES = ("multinomial", "complement")

# --- model selection (k-fold cross-validation from counts) -------------------------------------

SELECTION_MODES = ("off", "kfold")
SELECTION_METRICS = ("f1_macro", "accuracy", "log_loss")
# A document's fold is taken from this many leading hex digits (60 bits) of the SHA-256 of its id's
# UTF-8 bytes: Spark computes the same with sha2/substring/conv (nbknn.naive_bayes.select_job).
FOLD_HASH_HEX_DIGITS = 15


def fold_of(doc_id: str, folds: int) -> int:
    """The cross-validation fold (0..folds-1) of a document, from its id alone: stable across runs,
    machines and input order, so a document stays in its fold when data is added."""
    digest = hashlib.sha256(str(doc_id).encode("utf-8")).hexdigest()
    return int(digest[:FOLD_HASH_HEX_DIGITS], 16) % folds


# The selection job's summary (in the staging directory's job summaries) and what of it the manifest keeps.
SELECTION_JOB = "selection"
SELECTION_RECORD_KEYS = ("metric", "folds", "fold_documents", "best_index", "best", "points", "report")

# A model trained with selection keeps its per-fold counts beside term_counts, so that an
# incremental run adds the new documents' per-fold counts to them and selection stays exact:
# fold_counts/documents (fold, class_id, doc_count) and fold_counts/terms (fold, class_id,
# term_id, count), in the model's own ids. The manifest's ``fold_counts`` records the number of
# folds and how a document's fold is computed: counts of other folds cannot be added.
FOLD_COUNTS_DIR = "fold_counts"
FOLD_DOCUMENTS_TABLE = "fold_counts/documents"
FOLD_TERMS_TABLE = "fold_counts/terms"
FOLD_HASH = f"sha256-utf8-hex{FOLD_HASH_HEX_DIGITS}-mod"


def fold_documents_uri(model_dir: str) -> str:
    return join_uri(model_dir, FOLD_DOCUMENTS_TABLE)


def fold_terms_uri(model_dir: str) -> str:
    return join_uri(model_dir, FOLD_TERMS_TABLE)


def fold_counts_record(folds: int, fold_documents: list[int], entries: int, base_version: str | None) -> dict:
    """The manifest's ``fold_counts``: where the per-fold counts are and what they are counted by."""
    return {
        "folds": folds,
        "fold_hash": FOLD_HASH,
        "tables": {"documents": FOLD_DOCUMENTS_TABLE, "terms": FOLD_TERMS_TABLE},
        "fold_documents": list(fold_documents),
        "entries": entries,
        "base_version": base_version,
    }


def fold_counts_problem(manifest: dict, folds: int) -> str | None:
    """Why an incremental run with ``folds``-fold selection cannot add its counts to the base model
    of ``manifest``, or None when it can (the plan and the selection job both ask)."""
    version = manifest.get("version")
    record = manifest.get("fold_counts")
    if not record:
        return (
            f"base model {version} keeps no per-fold counts (it was trained, or last merged, without "
            "selection=kfold): exact cross-validation after a merge needs the base's counts of every "
            "fold; train with mode=full and selection=kfold first"
        )
    if record.get("fold_hash") != FOLD_HASH:
        return (
            f"base model {version} assigned documents to folds by {record.get('fold_hash')!r}, this "
            f"code by {FOLD_HASH!r}: counts of different folds cannot be added"
        )
    if record.get("folds") != folds:
        return (
            f"base model {version} keeps counts of {record.get('folds')} folds, this run asks for "
            f"folds={folds}: a document's fold depends on the number of folds, so the counts cannot "
            f"be added (use folds={record.get('folds')}, or mode=full)"
        )
    return None


def selected_model(selection_summary: dict) -> dict:
    """The manifest's ``model`` entry of a model whose parameters selection chose."""
    best = selection_summary["best"]
    return {"type": best["model_type"], "alpha": float(best["alpha"]), "fit_prior": bool(best["fit_prior"])}

NB_MODELS_AREA = "models/naive_bayes"
LATEST_NAME = "LATEST"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = 1
CLASSES_TABLE = "classes"
VOCABULARY_TABLE = "vocabulary"
TERM_COUNTS_TABLE = "term_counts"
# Each application's record of what it wrote, next to its output (a leading '_': Spark and Hadoop
# readers skip it).
SUMMARY_NAME = "_summary.json"


def shard_dir_name(shard: int) -> str:
    return f"shard={shard}"


def classes_uri(model_dir: str) -> str:
    return join_uri(model_dir, CLASSES_TABLE)


def vocabulary_uri(model_dir: str) -> str:
    return join_uri(model_dir, VOCABULARY_TABLE)


def term_counts_uri(model_dir: str) -> str:
    return join_uri(model_dir, TERM_COUNTS_TABLE)


def term_counts_shard_uri(model_dir: str, shard: int) -> str:
    return join_uri(term_counts_uri(model_dir), shard_dir_name(shard))


def manifest_uri(model_dir: str) -> str:
    return join_uri(model_dir, MANIFEST_NAME)


def work_uri(model_dir: str, name: str) -> str:
    """Scratch space of the training jobs; removed before the model is published."""
    return join_uri(model_dir, "_work", name)


def job_summary_uri(model_dir: str, job: str) -> str:
    """A training job's summary in the staging directory: what publishing builds the manifest from."""
    return work_uri(model_dir, f"summaries/{job}.json")


def model_params_problem(model_type: str, alpha: float) -> str | None:
    """Why a model type or smoothing cannot be applied by prediction, or None when they can."""
    if model_type not in MODEL_TYPES:
        return f"model_type must be one of {MODEL_TYPES} (got {model_type!r})"
    if not alpha > 0:
        return f"alpha must be > 0 (got {alpha})"
    return None


def model_manifest(
    prior: dict,
    terms: dict,
    merge: dict | None,
    version: str,
    model: dict,
    lineage: dict,
    created_at: str,
    selection: dict | None = None,
) -> dict:
    """A model's manifest.json, from the summaries of the jobs that built it (class prior, term
    counts, and merge when incremental). Both publishers (the Airflow task and the Spark
    application) build it here, so they write the same document.

    ``model``: {"type", "alpha", "fit_prior"}; ``lineage``: the run's own record (from its plan);
    ``selection``: the selection job's summary when selection chose ``model`` (the manifest then
    keeps its whole table, and ``fold_counts``: where its per-fold counts are). ``report``: the model's report (its page, each class's top terms), from
    the job that wrote it (selection, else term counts, which merge rewrites for the merged model)."""
    report = selection["report"] if selection else terms.get("report")
    return {
        **({"selection": {key: selection[key] for key in SELECTION_RECORD_KEYS}} if selection else {}),
        **({"fold_counts": selection["fold_counts"]} if selection and selection.get("fold_counts") else {}),
        **({"report": report} if report else {}),
        "format_version": MANIFEST_FORMAT_VERSION,
        "kind": "naive_bayes",
        "version": version,
        "created_at": created_at,
        "model": model,
        "tokenizer": terms["tokenizer"],
        "input": prior["input"],
        "records": prior["records"],
        "rejects_uri": prior["rejects_uri"],
        "counts": {
            "documents": terms["documents"],
            "classes": prior["classes"],
            "vocabulary_size": terms["vocabulary_size"],
            "entries": terms["entries"],
            "tokens": terms["tokens"],
            "terms_below_min_count": terms["terms_below_min_count"],
        },
        "min_term_count": terms["min_term_count"],
        "num_shards": len(terms["shards"]),
        "shards": terms["shards"],
        "shard_imbalance": terms["shard_imbalance"],
        "tables": {
            "classes": CLASSES_TABLE,
            "vocabulary": VOCABULARY_TABLE,
            "term_counts": TERM_COUNTS_TABLE,
        },
        "lineage": manifest_lineage(lineage, prior, merge, version),
        "code_version": terms["code_version"],
    }


def manifest_lineage(run_lineage: dict, prior_summary: dict, merge_summary: dict | None, version: str) -> dict:
    """The manifest's lineage: the run's own record plus ``parent_version`` and ``partitions``,
    every input folder whose documents the model counts, across its ancestry, each with the
    version (and run) that folded it in."""
    lineage = dict(run_lineage)
    parent_partitions = merge_summary["parent_partitions"] if merge_summary else []
    lineage["parent_version"] = merge_summary["parent_version"] if merge_summary else None
    lineage["partitions"] = [
        *parent_partitions,
        *(
            {"uri": folder, "version": version, "run_id": run_lineage.get("run_id")}
            for folder in prior_summary.get("partitions", [])
        ),
    ]
    return lineage


# --- Naive Bayes prediction runs ---------------------------------------------------------------

NB_PREDICTIONS_AREA = "predictions/naive_bayes"
PREDICTION_OUTPUTS = ("vectors", "scores", "predictions", "report")
METRICS_NAME = "metrics.json"
CONFUSION_PNG_NAME = "confusion_matrix.png"
CLASS_F1_PNG_NAME = "per_class_f1.png"
REPORT_HTML_NAME = "report.html"
REPORT_SUMMARY_NAME = "summary.json"
# The quality history: one row per evaluated run, ``<run-key>.json``, in this folder of the
# predictions area (beside the runs' folders; the leading '_' keeps it out of Spark's listings),
# and its picture in each run's report.
QUALITY_HISTORY_NAME = "_quality_history"
QUALITY_HISTORY_PNG_NAME = "quality_history.png"
# knn_neighbors' report/ picture, drawn by the DAG's report task from the summary's numbers.
DISTANCE_PNG_NAME = "distance_by_rank.png"


def quality_history_uri(root: str) -> str:
    return join_uri(root, NB_PREDICTIONS_AREA, QUALITY_HISTORY_NAME)


# How a run predicts. ``single_pass``: one application reads, vectorises, scores against the whole
# model and combines (no intermediate outputs); ``per_shard``: vectorize, one pass per shard, combine
# (the design for models too large for one broadcast); ``auto`` picks single_pass when the model's
# scoring form fits ``single_pass_max_bytes``.
SINGLE_PASS = "single_pass"
PER_SHARD = "per_shard"
PREDICTION_PATHS = ("auto", SINGLE_PASS, PER_SHARD)
DEFAULT_SINGLE_PASS_MAX_BYTES = 256 * MIB
# The scoring form (nbknn.naive_bayes.scoring): a float64 weight and an int32 term id per entry, and
# per class an int64 row pointer, id, log prior and default log-probability.
SCORING_BYTES_PER_ENTRY = 12
SCORING_BYTES_PER_CLASS = 32


def scoring_bytes(manifest: dict) -> int:
    """Bytes of the whole model's scoring form, from its manifest (what one broadcast would hold)."""
    entries = sum(shard["entries"] for shard in manifest["shards"])
    return SCORING_BYTES_PER_ENTRY * entries + SCORING_BYTES_PER_CLASS * (manifest["counts"]["classes"] + 1)


def choose_prediction_path(manifest: dict, requested: str, single_pass_max_bytes: int) -> tuple[str, str]:
    """(path, why) for a prediction run with this model."""
    if requested not in PREDICTION_PATHS:
        raise ValueError(f"prediction_path must be one of {PREDICTION_PATHS} (got {requested!r})")
    if requested != "auto":
        return requested, "requested"
    needed = scoring_bytes(manifest)
    if needed <= single_pass_max_bytes:
        return SINGLE_PASS, f"the model's scoring form ({needed} bytes) fits single_pass_max_bytes ({single_pass_max_bytes})"
    return PER_SHARD, (
        f"the model's scoring form ({needed} bytes) exceeds single_pass_max_bytes ({single_pass_max_bytes}): "
        f"one pass per shard ({manifest['num_shards']})"
    )


def prediction_layout(run_dir: str) -> dict[str, str]:
    """The outputs of one nb_predict run; ``scores`` holds one ``shard=S`` directory per model shard."""
    return {"run_dir": run_dir, **{name: join_uri(run_dir, name) for name in PREDICTION_OUTPUTS}}


def scores_shard_uri(scores_dir: str, shard: int) -> str:
    return join_uri(scores_dir, shard_dir_name(shard))


def report_summary_uri(report_dir: str) -> str:
    return join_uri(report_dir, REPORT_SUMMARY_NAME)


# --- document vectors ------------------------------------------------------------------------------

DOC_VECTORS_JOB = "doc_vectors"


# --- k nearest neighbours ----------------------------------------------------------------------

KNN_JOB = "knn_neighbors"
NEIGHBORS_AREA = "neighbors"
KNN_MODES = ("auto", "broadcast", "blocked", "annoy")
# Exact modes: scikit-learn's names.
KNN_METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan", "chebyshev", "canberra")
# annoy mode: our metric -> Annoy's. Annoy's "angular" distance is sqrt(2 - 2 cos) = sqrt(2 * cosine
# distance) for non-zero vectors; "euclidean" is the plain L2 distance.
ANNOY_METRICS = {"euclidean": "euclidean", "sqeuclidean": "euclidean", "cosine": "angular", "manhattan": "manhattan"}
DEFAULT_K = 10
DEFAULT_METRIC = "euclidean"
# Exact modes: memory of one task's step (a pair of row groups, or a query chunk and a reference
# block), which sizes the groups and blocks. 256 MiB lets d = 128, k = 10 use groups of about
# 21 600 rows: fewer, larger units, each product tile reused over more rows.
DEFAULT_BLOCK_BYTES_BUDGET = 256 * MIB
# Smallest block budget worth running: below it a block holds a handful of rows.
MIN_BLOCK_BYTES_BUDGET = 1 * MIB
# Largest reference matrix (n x dim x 8 bytes) collected on the driver (broadcast, annoy, auto).
DEFAULT_BROADCAST_MAX_BYTES = 256 * MIB
DEFAULT_ANNOY_TREES = 50
NEIGHBOR_COLUMNS = ("id", "neighbor_ids", "distances")

# Areas of the data root that the pipeline's outputs own (vectors must not be published into one).
RESERVED_AREAS = (NB_MODELS_AREA.split("/")[0], NB_PREDICTIONS_AREA.split("/")[0], NEIGHBORS_AREA, "rejects")


def neighbors_uri(run_dir: str) -> str:
    return join_uri(run_dir, "neighbors")


def knn_report_uri(run_dir: str) -> str:
    return join_uri(run_dir, "report")


def knn_summary_uri(run_dir: str) -> str:
    return report_summary_uri(knn_report_uri(run_dir))


# --- summaries: written by the applications, read by the DAGs' report tasks -------------------


class _Summary:
    """A dataclass written as a JSON object; unknown keys of an older or newer writer are ignored."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict):
        names = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in document.items() if key in names})


@dataclass(frozen=True)
class KnnSummary(_Summary):
    """``report/summary.json`` of a knn_neighbors run."""

    job: str
    input: dict
    queries_input: dict | None
    self_join: bool
    records: dict
    rejects_uri: str | None
    dimension: int
    dimension_rule: str
    id_type: str
    k: int
    metric: str
    exclude_self: bool
    reference_vectors: int
    query_vectors: int
    mode_requested: str
    mode: str
    mode_reason: str
    reference_bytes_estimate: int
    broadcast_max_bytes: int
    mode_details: dict
    query_rows_computed: int
    blocks: dict | None
    annoy: dict | None
    output: dict
    timings_seconds: dict
    code_version: str
    # What report/distance_by_rank.png draws: per rank, the 10/50/90 % distance.
    distance_by_rank: dict | None = None

    def headline(self, picture: str | None = None) -> dict:
        """What the DAG's report task returns (its XCom); ``picture``: the picture it drew."""
        headline = {
            "neighbors_uri": self.output["uri"],
            "rows": self.output["rows"],
            "records": self.records,
            "k": self.k,
            "metric": self.metric,
            "mode": self.mode,
            "mode_reason": self.mode_reason,
            "seconds": self.timings_seconds["total"],
            "picture": picture,
        }
        if self.annoy:
            headline["recall_at_k"] = self.annoy["recall_at_k"]
        if self.blocks:
            headline["n_blocks"] = self.blocks["n_blocks"]
        return headline


@dataclass(frozen=True)
class PredictionSummary(_Summary):
    """``report/summary.json`` of an nb_predict run (written by the combiner)."""

    job: str
    model: dict
    num_shards: int
    top_n: int
    counts: dict
    vectors: dict
    rejects_uri: str | None
    predictions_uri: str
    predicted_by_label: dict
    shard_memory: list
    code_version: str
    metrics: dict | None = None
    path: str = PER_SHARD
    path_reason: str | None = None
    vectoriser: str | None = None
    duplicate_ids: list | None = None
    # Terms listed per prediction (0: none; nbknn.naive_bayes.prediction_terms).
    top_terms: int = 0

    def headline(self, model_version: str, uris: dict, page: str | None = None) -> dict:
        """What the DAG's report task returns (its XCom); ``page``: the report page it drew."""
        return {
            "model_version": model_version,
            "num_shards": self.num_shards,
            "path": self.path,
            "read": self.counts["read"],
            "rejected": self.counts["rejected"],
            "predicted": self.counts["predicted"],
            "reconciled": self.counts["reconciled"],
            "accuracy": self.metrics and self.metrics["accuracy"],
            "macro_f1": self.metrics and self.metrics["macro_f1"],
            "predictions": uris["predictions"],
            "report": uris["report"],
            "page": page,
        }


@dataclass(frozen=True)
class ModelRegistration(_Summary):
    """What nb_train's register task reads of a published manifest, and the model Asset event."""

    version: str
    num_shards: int
    counts: dict
    records: dict

    @classmethod
    def from_manifest(cls, manifest: dict) -> ModelRegistration:
        return cls.from_dict(manifest)

    def asset_event(self, version_dir: str) -> dict:
        return {"version": self.version, "uri": version_dir, "num_shards": self.num_shards}
