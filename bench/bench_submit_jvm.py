"""What the class-data-sharing archive saves a Spark task on a standalone cluster, as the compose
stack runs them: the driver in client mode beside spark-submit, one executor JVM started by the
worker. Three sets of JVM options, interleaved:

- ``defaults``: none (the JVM loads and verifies Spark's classes from the jars, both tiers of JIT);
- ``archive``: driver and executor map Spark's classes from the archive (``-XX:SharedArchiveFile``);
- ``archive_quick_driver``: the same, and the driver stops its JIT at the quick tier (what
  docker-compose.yml sets: the driver plans and collects, the executors do the work).

    python bench/bench_submit_jvm.py [--reps 5] [--name NAME]

Each repetition runs nb_train's two applications (nb_class_prior, then nb_term_counts) on the
20 Newsgroups training split, one spark-submit each. Reported per variant: the wall time of the
pair, the driver side's CPU (spark-submit, its JVM and the Python driver: the waited-for children
of this process) and the executors' CPU (the worker's waited-for children), medians with min and
max, and each variant's per-repetition ratio to ``defaults``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from bench_train_apps import APPS, arguments
from common import log, spread

VENV_BIN = common.REPO_ROOT / ".venv" / "bin"
VARIANTS = ("defaults", "archive", "archive_quick_driver")


def variant_options(variant: str, archive: Path) -> tuple[str, str]:
    """(driver SPARK_SUBMIT_OPTS, spark.executor.extraJavaOptions) of a variant."""
    from nbknn_local.jvm import QUICK_JIT

    if variant == "defaults":
        return "", ""
    shared = f"-XX:SharedArchiveFile={archive}"
    return (f"{QUICK_JIT} {shared}" if variant == "archive_quick_driver" else shared), shared


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_cluster(base: Path) -> tuple[str, list[subprocess.Popen]]:
    """A standalone master and one worker (2 cores, 2 GB) on 127.0.0.1: (master URL, processes)."""
    import pyspark

    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent),
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_NO_DAEMONIZE": "1", "SPARK_DAEMON_MEMORY": "512m", "SPARK_WORKER_DIR": str(base / "work")}
    env.pop("SPARK_SUBMIT_OPTS", None)
    master_port = free_port()
    url = f"spark://127.0.0.1:{master_port}"
    master = subprocess.Popen([str(VENV_BIN / "spark-class"), "org.apache.spark.deploy.master.Master", "--host",
                               "127.0.0.1", "--port", str(master_port), "--webui-port", str(free_port())],
                              env=env, stdout=open(base / "master.log", "w"), stderr=subprocess.STDOUT)
    # No wait for the master: the worker retries its registration until the master listens.
    worker = subprocess.Popen([str(VENV_BIN / "spark-class"), "org.apache.spark.deploy.worker.Worker", url,
                               "--host", "127.0.0.1", "--cores", "2", "--memory", "2g",
                               "--webui-port", str(free_port())],
                              env=env, stdout=open(base / "worker.log", "w"), stderr=subprocess.STDOUT)
    for _ in range(120):
        if "Successfully registered with master" in (base / "worker.log").read_text(errors="replace"):
            return url, [master, worker]
        time.sleep(1)
    raise RuntimeError(f"the worker did not register:\n{(base / 'worker.log').read_text()[-3000:]}")


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process's waited-for children (the worker's executor JVMs and their Python),
    once it has none left running: a child's CPU counts only after the parent has reaped it."""
    import psutil

    deadline = time.monotonic() + 60
    while psutil.Process(pid).children():
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} still has children after 60 s: their CPU would not be counted")
        time.sleep(0.2)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def run_variant(master: str, worker_pid: int, driver_opts: str, executor_opts: str, input_uri: str,
                out: Path) -> dict[str, float]:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_SUBMIT_OPTS": driver_opts}
    options = ["--master", master, "--conf", "spark.cores.max=2", "--conf", "spark.executor.cores=2",
               "--conf", "spark.executor.memory=1g", "--conf", "spark.driver.memory=1g",
               "--conf", f"spark.pyspark.python={sys.executable}", "--conf", "spark.sql.shuffle.partitions=8"]
    if executor_opts:
        options += ["--conf", f"spark.executor.extraJavaOptions={executor_opts}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    executors_before = children_cpu_seconds(worker_pid)
    started = time.perf_counter()
    for app in APPS:
        command = [str(VENV_BIN / "spark-submit"), *options, str(common.REPO_ROOT / "spark_apps" / f"{app}.py"),
                   *arguments(app, input_uri, out)]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{app} failed:\n{result.stderr[-3000:]}")
        if "[cds" in result.stdout + result.stderr:
            raise RuntimeError(f"{app}: the driver could not use the class archive:\n{result.stdout[-2000:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall,
            "driver_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "executor_cpu_s": children_cpu_seconds(worker_pid) - executors_before}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--name", default="submit_jvm_standalone")
    args = parser.parse_args(argv)

    from bench_nb import write_jsonl

    from nbknn_local import corpora
    from nbknn_local.jvm import spark_class_archive

    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-submit-jvm-"))
    processes: list[subprocess.Popen] = []
    # This benchmark's own Spark: a standalone cluster, 1g drivers and executors (run_variant).
    machine = {**common.machine(), "spark_master": "standalone on 127.0.0.1", "spark_driver_memory": "1g"}
    results = {"benchmark": "submit_jvm_standalone", "machine": machine, "apps": list(APPS)}
    try:
        archive = spark_class_archive(common.REPO_ROOT / "build" / "jvm", VENV_BIN)
        if archive is None:
            raise RuntimeError("no class archive could be built")
        train = corpora.documents("20newsgroups", "train")
        input_uri = write_jsonl(train, workdir / "input" / "train.jsonl")
        results["documents"] = len(train)
        master, processes = start_cluster(workdir)
        worker_pid = processes[1].pid
        options = {variant: variant_options(variant, archive) for variant in VARIANTS}
        results["jvm_options"] = {v: {"driver": d, "executor": e} for v, (d, e) in options.items()}
        log("warm-up (page cache, the cluster's first application)")
        run_variant(master, worker_pid, *options["archive"], input_uri, workdir / "warmup")
        samples: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
        for rep in range(args.reps):
            order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[:rep % len(VARIANTS)]
            for variant in order:
                samples[variant].append(run_variant(master, worker_pid, *options[variant], input_uri,
                                                    workdir / f"rep{rep}-{variant}"))
                log(f"rep {rep} {variant}: " + ", ".join(f"{k} {v:.2f}" for k, v in samples[variant][-1].items()))
        results["repetitions"] = args.reps
        for variant in VARIANTS:
            entry = {key: spread([s[key] for s in samples[variant]]) for key in samples[variant][0]}
            if variant != "defaults":
                entry["over_defaults"] = {
                    key: spread([s[key] / d[key] for s, d in zip(samples[variant], samples["defaults"])])
                    for key in samples[variant][0]}
            results[variant] = entry
        common.write_results(args.name, results)
        for variant in VARIANTS[1:]:
            ratios = results[variant]["over_defaults"]
            print(f"{variant}/defaults: wall {ratios['wall_s']['median']}, driver CPU "
                  f"{ratios['driver_cpu_s']['median']}, executor CPU {ratios['executor_cpu_s']['median']}")
    finally:
        for process in processes[::-1]:
            process.terminate()
            process.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
