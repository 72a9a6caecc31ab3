"""What every Spark task's spark-submit gets with ``--jars``: the tokeniser's scanner, built from
its source when the task runs, next to the jars the deployment names in its Spark conf.

Through the real operator and the provider's hook, with only ``subprocess.Popen`` replaced.
"""

from __future__ import annotations

import json
import zipfile

import pytest

from nbknn_airflow.spark_submit import spark_app


class Recorded(Exception):
    pass


@pytest.fixture
def submitted(tmp_path, monkeypatch):
    """``submitted()``: the spark-submit argument list of a Spark task of the project."""
    from airflow.providers.apache.spark.hooks import spark_submit as hook_module

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    monkeypatch.setenv("NBKNN_BUILD_DIR", str(tmp_path / "build"))
    (tmp_path / "build").mkdir()
    recorded = {}

    real_popen = hook_module.subprocess.Popen

    def popen(command, *args, **kwargs):
        if command[0].endswith("javac"):  # the task building the scanner: let it
            return real_popen(command, *args, **kwargs)
        recorded["command"] = command
        raise Recorded()

    monkeypatch.setattr(hook_module.subprocess, "Popen", popen)

    def run() -> list[str]:
        with pytest.raises(Recorded):
            spark_app("class_prior", "nb_class_prior.py", ["--input", "file:///data/in"]).execute(context={})
        return recorded["command"]

    return run


def _option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def test_the_scanner_jar_goes_with_the_deployments_jars(submitted, monkeypatch, tmp_path):
    # --jars replaces a spark.jars property: the deployment's jars must travel in --jars too.
    monkeypatch.setenv("NBKNN_SPARK_CONF", json.dumps({"spark.jars": "/opt/extra/a.jar,/opt/extra/b.jar"}))
    command = submitted()
    jars = _option(command, "--jars").split(",")
    assert jars[:2] == ["/opt/extra/a.jar", "/opt/extra/b.jar"]
    (scanner,) = jars[2:]
    assert scanner.startswith(str(tmp_path / "build" / "nbknn-token-scanner-")) and scanner.endswith(".jar")
    with zipfile.ZipFile(scanner) as jar:
        assert "nbknn/jvm/TokenRuns.class" in jar.namelist() and "nbknn/jvm/TokenText.class" in jar.namelist()
    assert not [part for part in command if part.startswith("spark.jars=")]
    # Built once: the next task finds it.
    assert _option(submitted(), "--jars").split(",")[2] == scanner


def test_without_a_jdk_the_task_runs_without_the_scanner(submitted, monkeypatch, tmp_path, caplog):
    empty = tmp_path / "no-jdk"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    command = submitted()
    assert "--jars" not in command
    assert "--py-files" in command
    assert "no javac" in caplog.text
