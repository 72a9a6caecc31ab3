"""Static checks of the compose stack (docker-compose.yml, Dockerfile, .env.example).

No Docker engine runs on the development machines, so the stack is checked by reading it: it
parses, every image is pinned, the versions of Airflow, Spark and Python agree everywhere, every
variable it reads is documented, no credential is baked in, and the services are wired to each
other (ports, hostnames, healthchecks behind every depends_on condition).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (REPO_ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = (REPO_ROOT / ".env.example").read_text()

AIRFLOW_SERVICES = ["airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]
SPARK_SERVICES = ["spark-master", "spark-worker-1", "spark-worker-2"]
HADOOP_SERVICES = ["namenode", "datanode", "hdfs-init"]
# ${NAME}, ${NAME:-default}, ${NAME:?error}, ${NAME:+alt}; "$$" escapes a literal dollar for the shell.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}")


def pins(text: str) -> dict[str, str]:
    """name -> version of the `name==version` lines of a requirements file."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


REQUIREMENTS = pins((REPO_ROOT / "requirements.txt").read_text())
CONSTRAINTS = pins((REPO_ROOT / "constraints.txt").read_text())


def env_example() -> dict[str, tuple[str, bool]]:
    """NAME -> (value, commented out) of every variable .env.example documents."""
    documented = {}
    for line in ENV_EXAMPLE.splitlines():
        match = re.match(r"^(#\s*)?([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            documented[match.group(2)] = (match.group(3), bool(match.group(1)))
    return documented


def interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation, enough for this file (defaults, required, alternatives)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        current = env.get(name, "")
        if operator == ":-":
            return current or interpolate(argument, env)
        if operator == ":?":
            if not current:
                raise KeyError(f"{name} is required: {argument}")
            return current
        if operator == ":+":
            return interpolate(argument, env) if current else ""
        return current

    return VARIABLE.sub(substitute, value).replace("$$", "$")


def dummy_env() -> dict[str, str]:
    """A .env as a user would fill it in from .env.example: required values set, optional ones unset."""
    return {name: f"dummy-{name.lower()}" for name, (value, commented) in env_example().items() if not commented}


def resolved(service: str) -> dict:
    return interpolate(SERVICES[service], dummy_env())


def environment(service: str) -> dict[str, str]:
    env = resolved(service).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def dockerfile_base() -> str:
    (base,) = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, flags=re.MULTILINE)
    return base


def command_text(service: str) -> str:
    command = resolved(service).get("command", "")
    return " ".join(command) if isinstance(command, list) else command


# --- the file parses and has the production shape -------------------------------------------------


def test_compose_parses_with_the_expected_services():
    assert set(SERVICES) >= {"postgres", *AIRFLOW_SERVICES, *SPARK_SERVICES, *HADOOP_SERVICES}


def test_airflow_runs_the_local_executor_on_postgres():
    for service in AIRFLOW_SERVICES:
        env = environment(service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", service
        assert urlparse(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres", service
    commands = {service: command_text(service) for service in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    init_env = environment("airflow-init")
    assert init_env["_AIRFLOW_DB_MIGRATE"] == "true" and init_env["_AIRFLOW_WWW_USER_CREATE"] == "true"


def test_every_airflow_component_shares_one_fernet_key_and_jwt_secret_from_env():
    for key, variable in [("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY"),
                          ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET")]:
        values = {environment(service)[key] for service in AIRFLOW_SERVICES}
        assert values == {f"dummy-{variable.lower()}"}, key


def test_execution_api_url_points_at_the_api_server():
    url = urlparse(environment("airflow-scheduler")["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.hostname == "airflow-apiserver" and url.path == "/execution/"
    published = [str(port).split(":")[-1] for port in resolved("airflow-apiserver")["ports"]]
    assert str(url.port) in published


def test_spark_connection_and_data_root_point_at_the_cluster_and_hdfs():
    env = environment("airflow-scheduler")
    connection = json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"])
    master = urlparse(connection["host"])
    assert connection["conn_type"] == "spark" and master.scheme == "spark"
    master_command = command_text("spark-master")
    assert master.hostname == resolved("spark-master")["hostname"] == "spark-master"
    assert f"--port {master.port}" in master_command and f"--host {master.hostname}" in master_command
    for worker in ["spark-worker-1", "spark-worker-2"]:
        assert f"spark://spark-master:{master.port}" in command_text(worker)

    hadoop_env = environment("namenode")
    root = urlparse(env["NBKNN_DATA_ROOT"])
    assert root.scheme == "hdfs" and root.path.startswith("/")
    assert f"{root.hostname}:{root.port}" == hadoop_env["HDFS-SITE.XML_dfs.namenode.rpc-address"]
    assert env["NBKNN_DATA_ROOT"].startswith(hadoop_env["CORE-SITE.XML_fs.defaultFS"])
    assert hadoop_env["HDFS-SITE.XML_dfs.webhdfs.enabled"] == "true"
    assert hadoop_env["HDFS-SITE.XML_dfs.namenode.http-address"].endswith(f":{env['NBKNN_WEBHDFS_PORT']}")
    assert resolved("namenode")["hostname"] == root.hostname
    # hdfs-init creates and loads the same root the DAGs use.
    assert f'root="{root.path}"' in command_text("hdfs-init")


def test_executors_can_reach_the_driver_in_the_scheduler_container():
    conf = json.loads(environment("airflow-scheduler")["NBKNN_SPARK_CONF"])
    assert conf["spark.driver.host"] == resolved("airflow-scheduler")["hostname"]


# --- pinned images and versions that agree -----------------------------------------------------


def test_every_image_is_pinned():
    images = {name: resolved(name).get("image") for name in SERVICES}
    assert all(images.values()), f"services without an image tag: {[n for n, i in images.items() if not i]}"
    for name, image in [*images.items(), ("Dockerfile FROM", dockerfile_base())]:
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: image {image!r} is not pinned to a version"


def test_airflow_spark_and_python_versions_agree_with_requirements_and_dockerfile():
    airflow_version, pyspark_version = REQUIREMENTS["apache-airflow"], REQUIREMENTS["pyspark"]
    # pyspark-client installs into pyspark's package directory: both must be one version.
    assert REQUIREMENTS["pyspark-client"] == pyspark_version
    assert CONSTRAINTS["apache-airflow"] == airflow_version and CONSTRAINTS["pyspark"] == pyspark_version

    match = re.fullmatch(r"apache/airflow:(?P<airflow>[\d.]+)-python(?P<python>\d+\.\d+)", dockerfile_base())
    assert match, dockerfile_base()
    assert match["airflow"] == airflow_version
    python_version = match["python"]
    # The build re-checks the versions it installed; those checks must name the same versions.
    assert f"pyspark.__version__ == '{pyspark_version}'" in DOCKERFILE
    assert f"airflow.__version__ == '{airflow_version}'" in DOCKERFILE
    assert f"sys.version_info[:2] == ({python_version.replace('.', ', ')})" in DOCKERFILE
    assert "-r /opt/nbknn/requirements.txt -c /opt/nbknn/constraints.txt" in DOCKERFILE
    # The project is installed editable where the stack mounts its folders (the Airflow side imports
    # nbknn.contract from the mounted spark_apps/).
    assert "pip install --no-cache-dir --no-deps -e /opt/airflow" in DOCKERFILE
    for folder in ("spark_apps", "plugins"):
        assert f"COPY --chown=airflow:0 {folder} /opt/airflow/{folder}" in DOCKERFILE
    assert "openjdk-17-jre-headless" in DOCKERFILE

    # Spark master, workers and every Airflow component (where the drivers run) are one image,
    # built from the Dockerfile: one Spark, one Python.
    built = {name: resolved(name)["image"] for name in [*AIRFLOW_SERVICES, *SPARK_SERVICES]}
    assert len(set(built.values())) == 1, built
    for name in [*AIRFLOW_SERVICES, *SPARK_SERVICES]:
        assert resolved(name)["build"]["dockerfile"] == "Dockerfile", name
    tag = next(iter(built.values())).rpartition(":")[2]
    assert tag == f"{airflow_version}-spark{pyspark_version}-python{python_version}"

    # The tests run the same Python and pyspark as the image.
    import pyspark

    assert f"{sys.version_info.major}.{sys.version_info.minor}" == python_version
    assert pyspark.__version__ == pyspark_version
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert f'target-version = "py{python_version.replace(".", "")}"' in pyproject


def test_hadoop_image_major_version_matches_the_spark_hadoop_client():
    import pyspark

    jars = list((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    assert jars, "pyspark ships no hadoop-client-api jar"
    client_major = re.search(r"hadoop-client-api-(\d+)\.", jars[0].name).group(1)
    for name in HADOOP_SERVICES:
        repository, _, tag = resolved(name)["image"].rpartition(":")
        assert repository == "apache/hadoop" and tag.split(".")[0] == client_major, name


# --- variables, credentials, mounts, dependencies ----------------------------------------------


def test_every_variable_the_stack_reads_is_documented_in_env_example():
    documented = env_example()
    used = {match.group(1) for match in VARIABLE.finditer(COMPOSE_TEXT)}
    assert used, "no ${VARIABLE} found: the pattern is broken"
    missing = sorted(used - set(documented))
    assert not missing, f"variables read by docker-compose.yml but not in .env.example: {missing}"


def test_no_working_credentials_are_baked_in():
    documented = env_example()
    required = {m.group(1) for m in VARIABLE.finditer(COMPOSE_TEXT) if m.group(2) == ":?"}
    assert {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_ADMIN_PASSWORD", "POSTGRES_PASSWORD"} <= required
    for name in required:
        value, commented = documented[name]
        assert not commented and value == "", f"{name} must be listed empty (to be filled in), got {value!r}"
    # Secrets come only from variables: no literal value anywhere in the file.
    raw = yaml.safe_load(COMPOSE_TEXT)
    for name in [*AIRFLOW_SERVICES, "postgres"]:
        for key, value in raw["services"][name].get("environment", {}).items():
            if re.search(r"PASSWORD|SECRET|FERNET", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), f"{name}: {key} is not read from .env"
    with pytest.raises(KeyError, match="AIRFLOW_FERNET_KEY is required"):
        interpolate(SERVICES["airflow-scheduler"], {**dummy_env(), "AIRFLOW_FERNET_KEY": ""})
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().split()


def test_mounted_folders_and_build_inputs_exist():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO_ROOT / source).is_dir(), f"{name} mounts missing folder {source}"
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in SERVICES["airflow-scheduler"]["volumes"]}
    # plugins/nbknn_airflow/settings.py finds spark_apps/ next to plugins/ (REPO_ROOT = /opt/airflow).
    assert mounts["./dags"] == "/opt/airflow/dags"
    assert mounts["./plugins"] == "/opt/airflow/plugins"
    assert mounts["./spark_apps"] == "/opt/airflow/spark_apps"
    for path in ["Dockerfile", "requirements.txt", "constraints.txt", "scripts/nbknn_local/corpora.py"]:
        assert (REPO_ROOT / path).is_file(), path
    corpus_command = command_text("corpus-init")
    assert "/opt/nbknn/scripts/nbknn_local/corpora.py" in corpus_command


def test_every_dependency_waits_for_a_health_or_completion_condition():
    for name, service in SERVICES.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must state conditions"
        for target, spec in depends_on.items():
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target}, which has no healthcheck"
            elif condition == "service_completed_successfully":
                assert SERVICES[target].get("restart") == "no", f"{target} is a one-shot job"
            else:
                pytest.fail(f"{name} -> {target}: unexpected condition {condition}")
    long_running = [n for n, s in SERVICES.items() if s.get("restart") != "no"]
    for name in long_running:
        assert "healthcheck" in SERVICES[name], f"{name} has no healthcheck"
    assert SERVICES["airflow-scheduler"]["depends_on"]["hdfs-init"]["condition"] == "service_completed_successfully"
