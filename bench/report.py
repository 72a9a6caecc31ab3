"""Render every ``bench/results/*.json`` into one Markdown page, ``bench/results/README.md``.

    python bench/report.py

Goals checked: NB training and prediction each at most MLlib's time (ratio <= 1.0),
agreement with scikit-learn 100 %; <= 12 bytes per model entry in the prediction pass; this
pipeline completes >= 10x the largest classes x vocabulary product MLlib completes; exact kNN
>= 0.9x scikit-learn's single-process throughput and >= 20x the per-row recipe; a training run
with model selection (5 folds x 40 grid points) at most 2x a run without, at 20 Newsgroups x3.
"""

from __future__ import annotations

import json
import sys

from common import RESULTS_DIR

GOALS = {
    "agreement": 1.0,
    "bytes_per_entry": 12.0,
    "scale_factor": 10.0,
    "design_product": 1e10,
    "selection_cost": 2.0,
}


def _met(ok: bool | None) -> str:
    if ok is None:
        return "not comparable: scikit-learn's slow `metric=\"cosine\"` path, not euclidean on normalised rows"
    return "met" if ok else "**missed**"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _s(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _machine(result: dict, startup: str | None = None) -> str:
    """Where and when; ``startup`` replaces the note on the session's excluded Spark start-up."""
    m = result["machine"]
    startup = startup or f"Spark start-up {result.get('spark_startup_s', 'n/a')} s (excluded from every job time)"
    return (f"{m['date_utc']} on {m['host']} ({m['cpu']}, {m['logical_cpus']} logical CPUs, {m['memory_gb']} GB; "
            f"load average at start {m['load_average_at_start']}), Spark {m['versions']['pyspark']} "
            f"{m['spark_master']} (driver {m['spark_driver_memory']}), scikit-learn {m['versions']['sklearn']}, "
            f"numpy {m['versions']['numpy']}; {startup}")


def nb_section(result: dict, goals: list) -> list[str]:
    out = ["## Naive Bayes: this pipeline vs Spark MLlib vs scikit-learn (20 Newsgroups)", "", _machine(result), ""]
    for scale in result["scales"]:
        out.append(
            f"### 20 Newsgroups x{scale['scale']}: {scale['train_documents']} training / {scale['test_documents']} "
            f"test documents, vocabulary {scale['vocabulary_size']}, {scale['num_shards']} shards, "
            f"median of {scale['repetitions']} repetition(s)"
        )
        out += ["", "| model | side | train s | predict s | accuracy | agreement with sklearn |",
                "|---|---|---:|---:|---:|---:|"]
        for model_type, row in scale["models"].items():
            for side in ("ours", "mllib", "sklearn"):
                agree = row["agreement_with_sklearn"].get(side, 1.0 if side == "sklearn" else None)
                label = {"ours": "this pipeline", "mllib": "MLlib (same tokens)", "sklearn": "scikit-learn"}[side]
                out.append(f"| {model_type} | {label} | {_s(row['train_s'][side])} | {_s(row['predict_s'][side])} | "
                           f"{_pct(row['accuracy'][side])} | {_pct(agree) if side != 'sklearn' else '(reference)'} |")
        tok = scale.get("mllib_whitespace_tokenizer_multinomial")
        if tok:
            out.append(f"| multinomial | MLlib (own `Tokenizer`, {tok['features']} features) | {_s(tok['train_s'])} | "
                       f"{_s(tok['predict_s'])} | {_pct(tok['accuracy'])} | {_pct(tok['agreement_with_sklearn'])} |")
        out += ["", "| model | train ours/MLlib | predict ours/MLlib | train ours/sklearn | predict ours/sklearn |",
                "|---|---:|---:|---:|---:|"]
        for model_type, row in scale["models"].items():
            out.append(f"| {model_type} | {row['ratio_train_ours_over_mllib']} | {row['ratio_predict_ours_over_mllib']} | "
                       f"{row['ratio_train_ours_over_sklearn']} | {row['ratio_predict_ours_over_sklearn']} |")
            tag = f"x{scale['scale']} {model_type}"
            goals.append((f"NB agreement with sklearn 100 % ({tag})", _pct(row["agreement_with_sklearn"]["ours"]),
                          row["agreement_with_sklearn"]["ours"] >= GOALS["agreement"]))
        goals += nb_time_goals(scale)
        steps = {k: v["median_s"] for k, v in scale["timings"].items() if k.startswith("ours.") and k.count(".") >= 2}
        out += ["", "This pipeline, step medians (s): " + ", ".join(f"`{k[5:]}` {v}" for k, v in steps.items()), ""]
        memory = scale.get("memory")
        if memory:
            out += ["### Model memory in the prediction pass (all shards of the x1 model)", "",
                    "| model | classes | vocabulary | entries (density) | bytes/entry | bytes total | "
                    "MLlib dense bytes | MLlib / ours |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for model_type, m in memory.items():
                out.append(f"| {model_type} | {m['classes']} | {m['vocabulary_size']} | {m['entries']} ({m['density']}) | "
                           f"{m['bytes_per_entry']} (all arrays: {m['bytes_total_per_entry']}) | {m['bytes_total']} | "
                           f"{m['mllib_dense_bytes']} | {m['ratio_mllib_dense_over_ours_total']}x |")
                goals.append((f"<= 12 bytes per entry ({model_type})", f"{m['bytes_per_entry']}",
                              m["bytes_per_entry"] <= GOALS["bytes_per_entry"]))
            out.append("")
    return out


# The time goals (ours / MLlib with its own Tokenizer, multinomial, ratio of the medians) by scale.
NB_TIME_GOALS = {1: {"train": 1.0, "predict": 1.0}, 20: {"train": 0.7, "predict": 0.5}}


def nb_time_goals(scale: dict) -> list[tuple]:
    """The goal rows of one scale of bench_nb.py: the ratios its closing lines print."""
    goal = NB_TIME_GOALS.get(scale["scale"])
    if goal is None:
        return []
    rows = []
    for step in ("train", "predict"):
        value = scale[f"ratio_{step}_ours_over_mllib_tokenizer"]
        rows.append((f"NB {'training' if step == 'train' else 'prediction'} <= {goal[step]}x MLlib with its Tokenizer "
                     f"(x{scale['scale']} multinomial, ratio of medians)", f"{value}", value <= goal[step]))
    return rows


def nb_train_section(result: dict, goals: list) -> list[str]:
    """Training alone (bench_nb.py --only train): ratios per repetition, with their spread."""
    out = ["## Naive Bayes training alone: this pipeline vs Spark MLlib (20 Newsgroups)", "", _machine(result), "",
           "| scale | documents | reps | ours s | MLlib own `Tokenizer` s | MLlib same tokens s | "
           "ours/MLlib-Tokenizer: median of reps (min-max) | ours/MLlib same tokens (min-max) | "
           "CPU time ours/MLlib-Tokenizer (min-max) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if result.get("baseline_revision"):
        return nb_train_baseline_section(result, goals)
    for scale in result["scales"]:
        t, a, b = scale["train_s"], scale["ratio_train_per_rep_over_mllib_tokenizer"], scale["ratio_train_per_rep_over_mllib"]
        c = scale.get("cpu_ratio_train_per_rep_over_mllib_tokenizer") or {"median": "n/a", "min": "n/a", "max": "n/a"}
        out.append(f"| x{scale['scale']} | {scale['train_documents']} | {scale['repetitions']} | {_s(t['ours'])} | "
                   f"{_s(t['mllib_tokenizer'])} | {_s(t['mllib_same_tokens'])} | {a['median']} ({a['min']}-{a['max']}) | "
                   f"{b['median']} ({b['min']}-{b['max']}) | {c['median']} ({c['min']}-{c['max']}) |")
        goal = NB_TIME_GOALS.get(scale["scale"], {}).get("train")
        if goal is not None:
            goals.append((f"NB training <= {goal}x MLlib with its Tokenizer (x{scale['scale']}, median of per-rep ratios)",
                           f"{a['median']}", a["median"] <= goal))
    steps = {k: v["median_s"] for k, v in result["scales"][0]["timings"].items() if k.startswith("ours.train.")}
    out += ["", "This pipeline, step medians (s), first scale: " + ", ".join(f"`{k[5:]}` {v}" for k, v in steps.items()), ""]
    return out


def nb_train_baseline_section(result: dict, goals: list) -> list[str]:
    """Training alone, this pipeline against its own code at an earlier revision and MLlib, interleaved."""
    rev = result["baseline_revision"]

    def spread(r: dict) -> str:
        return f"{r['median']} ({r['min']}-{r['max']})"

    out = [f"## Naive Bayes training alone: this pipeline vs its code at {rev} vs Spark MLlib (20 Newsgroups)", "",
           _machine(result), "",
           f"| scale | documents | reps | ours s | {rev} s | MLlib own `Tokenizer` s | ours/MLlib per rep: median (min-max) | "
           f"{rev}/MLlib (min-max) | ours/{rev} (min-max) | term_counts ours/{rev} (min-max) | CPU time ours/{rev} (min-max) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for scale in result["scales"]:
        t = scale["train_s"]
        out.append(f"| x{scale['scale']} | {scale['train_documents']} | {scale['repetitions']} | {_s(t['ours'])} | "
                   f"{_s(t['baseline'])} | {_s(t['mllib_tokenizer'])} | "
                   f"{spread(scale['ratio_train_per_rep_over_mllib_tokenizer'])} | "
                   f"{spread(scale['baseline_ratio_train_per_rep_over_mllib_tokenizer'])} | "
                   f"{spread(scale['ratio_train_per_rep_over_baseline'])} | "
                   f"{spread(scale['ratio_term_counts_per_rep_over_baseline'])} | "
                   f"{spread(scale['cpu_ratio_train_per_rep_over_baseline'])} |")
        goal = NB_TIME_GOALS.get(scale["scale"], {}).get("train")
        ours = scale["ratio_train_per_rep_over_mllib_tokenizer"]
        if goal is not None:
            goals.append((f"NB training <= {goal}x MLlib with its Tokenizer (x{scale['scale']}, median of per-rep "
                          "ratios)", f"{ours['median']}", ours["median"] <= goal))
    out.append("")
    return out


def nb_publish_section(result: dict, goals: list) -> list[str]:
    """nb_train's publish step: the Spark application against the Airflow task, same staged model."""
    t = result["seconds"]

    def cell(side: str) -> str:
        return f"{t[side]['median_s']} [{t[side]['min_s']}, {t[side]['max_s']}]"

    return ["## Naive Bayes publish step: spark-submit vs the Airflow task (20 Newsgroups model)", "",
            _machine(result, "the Spark side is a whole spark-submit process, JVM start-up included"), "",
            "| repetitions | spark-submit `nb_publish_model.py` s, median [min, max] | Airflow task s | same publication |",
            "|---:|---:|---:|---|",
            f"| {result['repetitions']} | {cell('spark_submit')} | {cell('airflow_task')} | {result['same_publication']} |",
            ""]


def nb_train_apps_section(result: dict, goals: list) -> list[str]:
    """nb_train's two applications as spark-submits, this code against a git revision."""
    def cell(spread: dict) -> str:
        return f"{spread['median']} [{spread['min']}, {spread['max']}]"

    rows = [f"| `{key}` | {cell(result[key]['this_s'])} | {cell(result[key]['baseline_s'])} | "
            f"{cell(result[key]['this_over_baseline'])} |" for key in ("nb_class_prior", "nb_term_counts", "both")]
    return [f"## nb_train's Spark applications as spark-submits: this code against {result['baseline_revision']}", "",
            _machine(result, "each application is a whole spark-submit process, JVM start-up included, with "
                     f"`{' '.join(result['spark_submit_options'])}` (the driver's memory is spark-submit's default)"
                     + (f" and the JVM options `{result['jvm_options']}`" if "jvm_options" in result else "")), "",
            f"{result['documents']} documents (20 Newsgroups train), {result['repetitions']} interleaved repetitions; "
            f"the same model tables on both sides: {result['same_model_tables']}.", "",
            "| application | this s, median [min, max] | baseline s | this / baseline per repetition |",
            "|---|---:|---:|---:|", *rows, ""]


def scale_section(result: dict, goals: list) -> list[str]:
    out = ["## Naive Bayes beyond the dense model (synthetic classes x vocabulary grid)", "",
           _machine(result).replace("Spark start-up n/a s", "each cell starts its own JVM"), "",
           f"Each cell in its own process, killed after {result['timeout_s']} s; this pipeline with "
           f"max_entries_per_shard = {result['max_entries_per_shard']}; prediction of {result['test_docs']} documents.",
           "", "| side | classes | vocabulary | C x V | status | train s | predict s | model bytes | shards | "
           "JVM peak RSS MB | Python worker peak MB | note |", "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in result["cells"]:
        side = "this pipeline" if c["side"] == "ours" else "MLlib (HashingTF)"
        out.append(f"| {side} | {c['classes']} | 2^{c['log2_vocabulary']} | {c['product']:.3g} | {c['status']} | "
                   f"{c.get('train_s', '')} | {c.get('predict_s', '')} | {c.get('model_bytes', '')} | "
                   f"{c.get('num_shards', '')} | {c.get('jvm_peak_rss_mb', '')} | {c.get('python_worker_peak_rss_mb', '')} | "
                   f"{c.get('error', '')[:120]} |")
    largest = result["largest_completed_product"]
    if not largest["mllib"]:
        # A grid of this pipeline alone (the design's sizes, where MLlib fails long before).
        out += ["", f"Largest product completed by this pipeline: {largest['ours']:.3g}.", ""]
        goals.append(("Completes the design's C x V of 1e10", f"{largest['ours']:.3g}",
                      largest["ours"] >= GOALS["design_product"]))
        return out
    factor = result["ratio_ours_over_mllib_largest_product"]
    out += ["", f"Largest product completed: MLlib {largest['mllib']:.3g}, this pipeline {largest['ours']:.3g} "
            f"(factor {factor}; bounded by the grid, not by a failure of this pipeline, if its largest cell passed).", ""]
    goals.append(("Completes >= 10x MLlib's largest C x V", f"{factor}x", factor is not None and factor >= GOALS["scale_factor"]))
    return out


def selection_section(result: dict, goals: list) -> list[str]:
    """Model selection (bench_selection.py): its cost as nb_train pays it, and what it chose."""
    out = ["## Naive Bayes model selection by k-fold cross-validation from counts", "", _machine(result), ""]
    cost = result.get("cost")
    if cost:
        t, r = cost["timings"], cost["with_selection_over_plain"]

        def cell(name: str) -> str:
            return f"{t[name]['median_s']} [{t[name]['min_s']}, {t[name]['max_s']}]"

        out += [f"{cost['corpus']}: {cost['train_documents']} documents, {cost['folds']} folds x "
                f"{cost['grid_points']} grid points, {cost['repetitions']} repetitions taking turns; {cost['accounting']}. "
                "Seconds as median [min, max].", "",
                "| without selection s | with selection s | of which training s | of which selection job s | "
                "with / without per rep: median (min-max) | per rep | ratio of median times |",
                "|---:|---:|---:|---:|---:|---|---:|",
                f"| {cell('plain')} | {cell('with_selection')} | {cell('with_selection.train')} | "
                f"{cell('with_selection.select')} | {r['median']} ({r['min']}-{r['max']}) | "
                f"{', '.join(str(x) for x in cost['with_selection_over_plain_per_rep'])} | {cost['ratio_of_median_times']} |",
                ""]
        goals.append((f"training with selection <= 2x without ({cost['corpus']}, median of per-rep ratios)",
                      f"{r['median']}", r["median"] <= GOALS["selection_cost"]))
    quality = result.get("quality")
    if quality:
        out += [f"{quality['corpus']}: chosen {quality['chosen']}, GridSearchCV's choice {quality['sklearn_choice']} "
                f"(same: {quality['same_choice']}; largest per-fold score difference "
                f"{quality['max_fold_score_difference_vs_sklearn']}); test {quality['test_chosen']} against the "
                f"default's {quality['test_default']}.", ""]
    return out


def knn_section(result: dict, goals: list) -> list[str]:
    out = ["## Exact all-points kNN on Spark (blocked, broadcast) vs scikit-learn, FAISS flat and the per-row recipe",
           "", _machine(result), "",
           "Each method in its own process on both cores; Spark job time on local[2] (start-up and reading apart); "
           "seconds as median [min, max]; throughput ratios above 1: ours is faster. Agreement: sample rows whose "
           "ids and distances (1e-9 relative) equal a direct float64 brute force.", "",
           "| n | metric | reps | blocked s | broadcast s | scikit-learn s | FAISS flat s | per-row recipe s (est.) | "
           "slower mode / FAISS | / scikit-learn | / per-row | agreement (blocked, broadcast) | fallback rows | "
           "kernel s per core (blocked, broadcast) |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for size in result["sizes"]:
        for metric, row in size["metrics"].items():
            cell = {m: f"{row[m]['median_s']} [{row[m]['min_s']}, {row[m]['max_s']}]"
                    for m in ("blocked", "broadcast", "sklearn", "faiss")}
            slower = row[row["slower_exact_mode"]]
            agreement = ", ".join(_pct(row[m]["sample_rows_ids_and_distances_exact"]) for m in ("blocked", "broadcast"))
            fallback = max(row[m]["exact_fallback_rows"] for m in ("blocked", "broadcast"))
            out.append(f"| {size['n']} | {metric} | {size['repetitions']} | {cell['blocked']} | {cell['broadcast']} | "
                       f"{cell['sklearn']} | {cell['faiss']} | {row['per_row_recipe']['estimated_seconds']:.0f} | "
                       f"{slower['throughput_over_faiss']} | {slower['throughput_over_sklearn']} | "
                       f"{slower['speedup_over_per_row_recipe']} | {agreement} | {fallback} | "
                       f"{row['blocked']['kernel_seconds_per_core']}, {row['broadcast']['kernel_seconds_per_core']} |")
            tag = f"n={size['n']} {metric}, slower mode"
            goals.append((f"exact kNN >= 1.0x FAISS flat ({tag})", f"{slower['throughput_over_faiss']}",
                          slower["throughput_over_faiss"] >= 1.0))
            goals.append((f"exact kNN >= 1.6x scikit-learn ({tag})", f"{slower['throughput_over_sklearn']}",
                          slower["throughput_over_sklearn"] >= 1.6))
    out.append("")
    return out


def profile_section(result: dict, goals: list) -> list[str]:
    s = result["summary"]
    rows = [
        ("this pipeline, whole prediction (vectorise + 1 shard pass + combine)", s["library_predict_s"]),
        ("  run_vectorize", s["library_vectorize_s"]),
        ("  run_predict_shard (1 shard)", s["library_shard_pass_s"]),
        ("  run_combine (incl. report)", s["library_combine_s"]),
        ("MLlib prediction (same tokens; transform + write)", s["mllib_predict_s"]),
        ("parse JSON Lines + validate, count by reason (1 pass)", s["parse_s"]),
        ("parse + duplicate-id Window over whole records", s["parse_plus_duplicate_window_s"]),
        ("duplicate-id check on the ids alone (groupBy)", s["duplicate_ids_only_s"]),
        ("library document_vectors write", s["vectors_write_library_s"]),
        ("prototype vectors write (1 parse, 1 tokenisation, broadcast vocabulary)", s["vectors_write_prototype_s"]),
        ("report: metrics + confusion PNG + HTML (driver)", s["report_s"]),
        ("training: run_term_counts (whole job; needs run_class_prior's output)", s["train_term_counts_job_s"]),
        ("training: its counting core (parse, tokenise, count per (class, term), write)", s["train_count_core_s"]),
        ("MLlib CountVectorizer fit alone (same tokens)", s["mllib_countvectorizer_fit_s"]),
    ]
    reps = len(next(iter(result["timings"].values()))["samples_s"])
    out = [f"## Profile of this pipeline's prediction and term counting (20 Newsgroups, {reps} repetition(s))", "",
           _machine(result), "",
           "| step | median s |", "|---|---:|"]
    out += [f"| {name} | {value} |" for name, value in rows]
    out += ["", f"Prototype output equal to the library's vectors: {result['prototype_equals_library']}.", ""]
    return out


def vectorize_section(result: dict, goals: list) -> list[str]:
    s = result["summary"]
    return ["## Vectorising without a shuffle (20 Newsgroups test set)", "", _machine(result), "",
            "| step | median s |", "|---|---:|",
            f"| library `document_vectors` write (explode, groupBy, join, groupBy) | {s['library_document_vectors_s']} |",
            f"| per-row lookup: `CountVectorizerModel.from_vocabulary` (model vocabulary in term-id order) | "
            f"{s['countvectorizer_lookup_s']} |", "",
            f"Library / lookup: {s['ratio_library_over_lookup']}x, median of {s['repetitions']}; same term ids and "
            f"counts for every document: {result['lookup_equals_library']}.", ""]


def demo_section(result: dict, goals: list) -> list[str]:
    docs = result["documents"]
    out = ["## End to end: the demo's DAG runs, Spark start-up vs work per task", "",
           _machine(result, "every Spark task starts its own JVM (spark-submit)"), "",
           f"R52: {docs['train']} training / {docs['test']} test documents, `airflow dags test`, local Spark. "
           "Start-up = task start -> SparkContext up (Airflow task set-up, spark-submit, JVM, Python driver, "
           "SparkContext); work = SparkContext up -> application end, of which `to first job` = up to the first "
           "Spark job (SQL session set-up, the driver's first reads) and `jobs` = time with a Spark job running; "
           "tear-down = application end -> task end.", "",
           "| DAG | process wall s | DAG run s | tasks | Spark tasks | start-up s | work s | to first job s | jobs s "
           "| tear-down s | other tasks s | start-up share |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for dag, entry in {**result["dags"], "all": {"process_wall_s": None, "dag_run_s": None,
                                                  "totals": result["totals"]}}.items():
        t = entry["totals"]
        out.append(f"| {dag} | {_s(entry['process_wall_s'])} | {_s(entry['dag_run_s'])} | {t['tasks']} | "
                   f"{t['spark_tasks']} | {_s(t['startup_s'])} | {_s(t['work_s'])} | {_s(t['to_first_job_s'])} | {_s(t['jobs_s'])} | "
                   f"{_s(t['teardown_s'])} | {_s(t['non_spark_task_seconds'])} | {_pct(t['startup_share_of_spark_tasks'])} |")
    out += ["", "| task | s | start-up s | work s | to first job s | jobs s | tear-down s |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for dag, entry in result["dags"].items():
        for task in entry["tasks"]:
            name = f"{dag}.{task['task_id']}" + (f"[{task['map_index']}]" if task["map_index"] >= 0 else "")
            spark = task.get("spark")
            keys = ("startup_s", "work_s", "to_first_job_s", "jobs_s", "teardown_s")
            cells = [_s(spark[k]) for k in keys] if spark else [""] * len(keys)
            out.append(f"| {name} | {_s(task['duration_s'])} | " + " | ".join(cells) + " |")
    return out + [""]


def knn_kernel_section(result: dict, goals: list) -> list[str]:
    out = ["## Exact kNN kernel (no Spark) vs scikit-learn and FAISS flat, each in its own process", "",
           _machine(result), "",
           f"n = {result['n']}, d = {result['d']}, k = {result['k']}, {result['repetitions']} interleaved repetitions, "
           "2 threads; seconds as median [min, max]; throughput ratios above 1: ours is faster.", "",
           "| metric | ours | scikit-learn | FAISS flat | ours/sklearn | ours/faiss | sample rows equal to float64 "
           "brute force (ours, sklearn, faiss) | ours: product, filter, re-rank s |",
           "|---|---:|---:|---:|---:|---:|---|---|"]
    for metric, row in result["metrics"].items():
        cells = {m: f"{row[m]['median_s']} [{row[m]['min_s']}, {row[m]['max_s']}]" for m in ("ours", "sklearn", "faiss")}
        steps = row["ours"]["steps_median_s"]
        out.append(f"| {metric} | {cells['ours']} | {cells['sklearn']} | {cells['faiss']} | "
                   f"{row['throughput_ours_over_sklearn']} | {row['throughput_ours_over_faiss']} | "
                   + ", ".join(_pct(row[m]["sample_rows_equal_to_exact"]) for m in ("ours", "sklearn", "faiss"))
                   + f" | {steps['gemm']}, {steps['filter']}, {steps['rerank']} |")
        goals.append((f"kNN kernel >= 1.0x FAISS flat ({metric}, n={result['n']})",
                       f"{row['throughput_ours_over_faiss']}", row["throughput_ours_over_faiss"] >= 1.0))
    out.append("")
    return out


FLOOR_STEPS = {
    "read": "checked read (quarantine reasons), `noop` sink",
    "read_tokenise": "checked read + the model's tokeniser, `noop` sink",
    "read_dedup_tokenise": "checked read + duplicate-id check + tokeniser, `noop` sink",
    "predict": "our whole prediction (the path the plan chooses, written)",
}


def nb_floor_section(result: dict, goals: list) -> list[str]:
    timings, ratios = result["timings"], result["ratio_per_rep_over_mllib_tokenizer"]
    mllib = timings["mllib_tokenizer.predict"]
    out = [f"## NB prediction floor at x{result['scale']}: what no scorer can skip, against MLlib", "",
           _machine(result), "",
           f"{result['test_documents']} test documents, {result['repetitions']} interleaved repetitions; seconds as "
           "median [min, max]; ratio per repetition over MLlib's prediction with its own `Tokenizer` "
           f"(median {mllib['median_s']} s [{min(mllib['samples_s'])}, {max(mllib['samples_s'])}]).", "",
           "| step | seconds | ratio over MLlib (median [min, max]) |", "|---|---:|---:|"]
    for name, label in FLOOR_STEPS.items():
        t, r = timings[f"ours.{name}"], ratios[name]
        out.append(f"| {label} | {t['median_s']} [{min(t['samples_s'])}, {max(t['samples_s'])}] | "
                   f"{r['median']} [{r['min']}, {r['max']}] |")
    return out + [""]


def single_pass_profile_section(result: dict, goals: list) -> list[str]:
    def cell(spread: dict) -> str:
        return f"{spread['median']} [{spread['min']}, {spread['max']}]"

    phases = result["profiled_run"]["cumulative_s"]
    out = [f"## NB single-pass prediction at x{result.get('scale', 1)}: where the time goes", "", _machine(result), "",
           f"{result['documents']['test']} test documents, {len(result['repetitions'])} repetitions interleaved "
           "with MLlib's prediction (its own `Tokenizer`); seconds as median [min, max].", "",
           "| measure | seconds or ratio |", "|---|---:|",
           f"| ours, whole run | {cell(result['ours_s'])} |",
           f"| of which Spark jobs ({result['repetitions'][0]['spark_jobs']}) | {cell(result['spark_jobs_s'])} |",
           f"| of which outside jobs (driver) | {cell(result['outside_jobs_s'])} |",
           f"| MLlib, own Tokenizer | {cell(result['mllib_own_tokenizer_s'])} |",
           f"| ours / MLlib | {cell(result['ours_over_mllib'])} |",
           *([f"| the library at {result['baseline_revision']}, whole run | {cell(result['baseline_s'])} |",
              f"| ours / that library | {cell(result['ours_over_baseline'])} |"] if "baseline_s" in result else []),
           "",
           f"One more run under cProfile ({result['profiled_run']['seconds_with_profiler']} s with the profiler), "
           "cumulative seconds by library function: "
           + ", ".join(f"`{name}` {seconds}" for name, seconds in phases.items()) + "."]
    return out + [""]


def single_pass_ab_section(result: dict, goals: list) -> list[str]:
    """ab_nb_single_pass.py: this revision against another, nothing between their runs."""
    def cell(spread: dict) -> str:
        return f"{spread['median']} [{spread['min']}, {spread['max']}]"

    return [f"## NB single-pass prediction at x{result['scale']}: this code against {result['baseline_revision']}",
            "", _machine(result), "",
            f"{result['test_documents']} test documents, {result['runs']} runs of each, their order alternating; "
            "seconds as median [min, max].", "",
            "| measure | seconds or ratio |", "|---|---:|",
            f"| this code | {cell(result['ours_s'])} |",
            f"| {result['baseline_revision']} | {cell(result['baseline_s'])} |",
            f"| this code / {result['baseline_revision']}, per run | {cell(result['ours_over_baseline'])} |", ""]


def submit_jvm_section(result: dict, goals: list) -> list[str]:
    """nb_train's two applications on a standalone cluster under three sets of JVM options."""
    def cell(spread: dict) -> str:
        return f"{spread['median']} [{spread['min']}, {spread['max']}]"

    rows = []
    for variant, options in result["jvm_options"].items():
        entry = result[variant]
        ratio = entry.get("over_defaults", {}).get("wall_s")
        rows.append(f"| `{variant}` | `{options['driver'] or '-'}` | `{options['executor'] or '-'}` | "
                    f"{cell(entry['wall_s'])} | {cell(ratio) if ratio else '1'} | {cell(entry['driver_cpu_s'])} | "
                    f"{cell(entry['executor_cpu_s'])} |")
    return ["## A Spark task's JVMs on a standalone cluster: the class archive and the driver's quick JIT", "",
            _machine(result, "each repetition is nb_train's two applications as spark-submits in client mode "
                     "against a local master and worker (one executor of 2 cores each)"), "",
            f"{result['documents']} documents (20 Newsgroups train), {result['repetitions']} interleaved repetitions.",
            "", "| variant | driver JVM options | executor JVM options | wall s, median [min, max] | "
            "wall / defaults per repetition | driver CPU s | executor CPU s |",
            "|---|---|---|---:|---:|---:|---:|", *rows, ""]


SECTIONS = {"submit_jvm_standalone": submit_jvm_section, "naive_bayes_single_pass_profile": single_pass_profile_section,
            "naive_bayes_single_pass_ab": single_pass_ab_section, "demo_end_to_end": demo_section, "naive_bayes_vectorize_profile": vectorize_section, "naive_bayes_predict_profile": profile_section, "naive_bayes_20newsgroups": nb_section, "naive_bayes_20newsgroups_train": nb_train_section, "naive_bayes_publish": nb_publish_section, "naive_bayes_train_apps": nb_train_apps_section, "naive_bayes_scale": scale_section, "naive_bayes_selection": selection_section, "knn_all_points": knn_section, "knn_kernel": knn_kernel_section,
            "naive_bayes_prediction_floor": nb_floor_section}
ORDER = ("demo", "nb", "nb_x20", "nb_profile", "nb_profile_vectorize", "nb_scale", "knn", "knn_kernel")


def main() -> None:
    goals: list = []
    body: list[str] = []
    files = sorted(RESULTS_DIR.glob("*.json"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    for path in files:
        result = json.loads(path.read_text())
        section = SECTIONS.get(result.get("benchmark"))
        if section is None:
            continue
        first_goal = len(goals)
        try:
            rendered = section(result, goals)
        except KeyError as exc:
            # A results file older than its section (the bench changed, not yet rerun): say so
            # in the page instead of failing every other section with it.
            del goals[first_goal:]
            print(f"{path.name}: not rendered, no field {exc} (rerun its benchmark)", file=sys.stderr)
            rendered = [f"`{path.name}` is not rendered: it lacks the field {exc} that its section reads; "
                        "rerun its benchmark.", ""]
        body += [f"<!-- from {path.name} -->", *rendered]
        if path.stem not in ORDER:
            # An extra run (e.g. a repetition under another --name): its goal rows name their file.
            goals[first_goal:] = [(f"{name}, {path.name}", value, ok) for name, value, ok in goals[first_goal:]]
    notes = RESULTS_DIR / "NOTES.md"
    head = ["# Benchmark results", "",
            "Generated by `make bench` (`bench/report.py` from `bench/results/*.json`; do not edit by hand). "
            "Times are wall-clock medians; ratios are computed within one run; every Spark job time excludes "
            "the JVM start-up (reported separately).", "", "## Goals", "", "| goal | value | status |", "|---|---:|---|"]
    head += [f"| {name} | {value} | {_met(ok)} |" for name, value, ok in goals]
    head.append("")
    text = "\n".join(head + body)
    if notes.exists():
        text += "\n" + notes.read_text()
    (RESULTS_DIR / "README.md").write_text(text + "\n")
    print(f"wrote {RESULTS_DIR / 'README.md'}")


if __name__ == "__main__":
    sys.exit(main())
