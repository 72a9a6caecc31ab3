"""End to end: the demo's DAG runs, each task's wall time split into Spark start-up and work.

    python bench/bench_demo.py [--limit-train N] [--limit-test N] [--name demo]

Runs ``scripts/demo.py`` (nb_train -> nb_predict -> doc_vectors -> knn_neighbors through
``airflow dags test``, local Spark, SQLite) in a scratch data root and Airflow home with Spark's
event log on. Then every task instance's start and end come from the demo's metadata DB and every
Spark application's start, jobs and end from its event log; a Spark task's wall time splits into

* start-up: task start -> SparkContext up (Airflow's task set-up, spark-submit, the JVM, the
  Python driver's imports, the SparkContext);
* work: SparkContext up -> application end (the application's Spark jobs and driver code;
  ``to_first_job_s`` is its first part, up to the first Spark job: the SQL session's set-up and
  the driver's first reads; ``jobs_s`` is the part during which at least one Spark job ran);
* tear-down: application end -> task end (JVM exit, Airflow's bookkeeping).

Other tasks (plan, report, ...) are plain Python in the Airflow task process. One repetition: the
demo's run is minutes long and a DAG run is the unit an operator waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import common
from common import log

DAGS = ("nb_train", "nb_predict", "doc_vectors", "knn_neighbors")


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


def task_instances(airflow_db: Path) -> list[dict]:
    """Every finished task instance of the demo's runs, with start and end (UTC)."""
    with sqlite3.connect(airflow_db) as connection:
        rows = connection.execute(
            "select dag_id, task_id, map_index, state, start_date, end_date from task_instance "
            "where start_date is not null and end_date is not null order by start_date"
        ).fetchall()
    return [
        {"dag_id": d, "task_id": t, "map_index": m, "state": s, "start": _utc(a), "end": _utc(b)}
        for d, t, m, s, a, b in rows
    ]


def dag_runs(airflow_db: Path) -> dict[str, float]:
    with sqlite3.connect(airflow_db) as connection:
        rows = connection.execute("select dag_id, start_date, end_date from dag_run").fetchall()
    return {d: round((_utc(b) - _utc(a)).total_seconds(), 3) for d, a, b in rows if a and b}


def spark_applications(event_dir: Path) -> list[dict]:
    """Name, start, end and busy job time of every application in the event log directory."""
    apps = []
    for path in sorted(event_dir.iterdir()):
        if path.name.startswith("."):
            continue
        app = {"name": None, "start": None, "end": None, "jobs": []}
        starts: dict[int, int] = {}
        with open(path, encoding="utf-8") as events:
            for line in events:
                event = json.loads(line)
                kind = event.get("Event")
                if kind == "SparkListenerApplicationStart":
                    app["name"], app["start"] = event["App Name"], _ms(event["Timestamp"])
                elif kind == "SparkListenerApplicationEnd":
                    app["end"] = _ms(event["Timestamp"])
                elif kind == "SparkListenerJobStart":
                    starts[event["Job ID"]] = event["Submission Time"]
                elif kind == "SparkListenerJobEnd" and event["Job ID"] in starts:
                    app["jobs"].append((starts[event["Job ID"]], event["Completion Time"]))
        if app["start"] is not None:
            apps.append(app)
    return apps


def _busy_seconds(intervals: list[tuple[int, int]]) -> float:
    """Length of the union of (start, end) millisecond intervals, in seconds."""
    total, current_end = 0, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            total += end - start
            current_end = end
        elif end > current_end:
            total += end - current_end
            current_end = end
    return total / 1000


def breakdown(instances: list[dict], apps: list[dict]) -> list[dict]:
    """Each task instance with its Spark application's split (when it ran one)."""
    rows = []
    for ti in instances:
        row = {
            "dag_id": ti["dag_id"], "task_id": ti["task_id"], "map_index": ti["map_index"], "state": ti["state"],
            "duration_s": round((ti["end"] - ti["start"]).total_seconds(), 3),
        }
        mine = [a for a in apps if ti["start"] <= a["start"] <= ti["end"]]
        if len(mine) == 1 and mine[0]["end"] is not None:
            app = mine[0]
            row["spark"] = {
                "app_name": app["name"],
                "startup_s": round((app["start"] - ti["start"]).total_seconds(), 3),
                "work_s": round((app["end"] - app["start"]).total_seconds(), 3),
                "to_first_job_s": round((_ms(min(j[0] for j in app["jobs"])) - app["start"]).total_seconds(), 3)
                if app["jobs"] else None,
                "jobs_s": round(_busy_seconds(app["jobs"]), 3),
                "teardown_s": round((ti["end"] - app["end"]).total_seconds(), 3),
                "jobs": len(app["jobs"]),
            }
        elif mine:
            raise RuntimeError(f"{ti['dag_id']}.{ti['task_id']}: {len(mine)} Spark applications overlap the task")
        rows.append(row)
    return rows


def totals(rows: list[dict]) -> dict:
    spark = [r["spark"] for r in rows if "spark" in r]
    out = {
        "tasks": len(rows),
        "spark_tasks": len(spark),
        "task_seconds": round(sum(r["duration_s"] for r in rows), 3),
        "non_spark_task_seconds": round(sum(r["duration_s"] for r in rows if "spark" not in r), 3),
    }
    for key in ("startup_s", "work_s", "to_first_job_s", "jobs_s", "teardown_s"):
        out[key] = round(sum(s[key] or 0 for s in spark), 3)
    out["startup_share_of_spark_tasks"] = common.ratio(
        out["startup_s"], out["startup_s"] + out["work_s"] + out["teardown_s"])
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit-train", type=int, help="first N training documents (default: all of R52)")
    parser.add_argument("--limit-test", type=int, help="first N test documents (default: all)")
    parser.add_argument("--name", default="demo")
    args = parser.parse_args(argv)

    results = {"benchmark": "demo_end_to_end", "machine": common.machine()}
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-demo-"))
    event_dir = workdir / "spark-events"
    event_dir.mkdir()
    try:
        env = dict(os.environ)
        # local_env merges these into the demo's Spark properties.
        env["NBKNN_SPARK_CONF"] = json.dumps({
            "spark.eventLog.enabled": "true", "spark.eventLog.dir": event_dir.as_uri(),
            # One plain JSON Lines file per application (Spark 4 rolls and compresses by default).
            "spark.eventLog.rolling.enabled": "false", "spark.eventLog.compress": "false",
        })
        command = [sys.executable, str(common.REPO_ROOT / "scripts" / "demo.py"),
                   "--data-root", str(workdir / "data"), "--airflow-home", str(workdir / "airflow_home")]
        for flag, value in (("--limit-train", args.limit_train), ("--limit-test", args.limit_test)):
            if value:
                command += [flag, str(value)]
        log("running the demo: " + " ".join(command[1:]))
        demo = subprocess.run(command, env=env, capture_output=True, text=True)
        if demo.returncode != 0:
            sys.exit(demo.stdout[-3000:] + demo.stderr[-3000:])
        walls = {d: float(s) for d, s in re.findall(r"^  (\w+) succeeded in (\d+) s$", demo.stdout, re.M)}
        documents = re.search(r"(\d+) training documents in \d+ dated partitions, (\d+) to score", demo.stdout)
        rows = breakdown(task_instances(workdir / "airflow_home" / "airflow.db"), spark_applications(event_dir))
        runs = dag_runs(workdir / "airflow_home" / "airflow.db")
        results["documents"] = {"train": int(documents.group(1)), "test": int(documents.group(2))}
        results["dags"] = {
            dag: {"process_wall_s": walls.get(dag), "dag_run_s": runs.get(dag),
                  "tasks": [r for r in rows if r["dag_id"] == dag], "totals": totals([r for r in rows if r["dag_id"] == dag])}
            for dag in DAGS
        }
        results["totals"] = totals(rows)
        common.write_results(args.name, results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
