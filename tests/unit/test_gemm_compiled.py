"""The kernel's compiled loops survive a new Spark application: spark-submit unpacks the library
zip under a new folder every time, yet a second process importing it from elsewhere loads the
loops numba compiled before instead of compiling them again."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nbknn

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import nbknn
from nbknn.knn.gemm import self_join_topk
from nbknn.knn.gemm_compiled import scan_module
X = np.random.default_rng(0).standard_normal((300, 8))
self_join_topk(X, np.arange(300), 3, block=128, n_threads=1)
module = scan_module()
loops = (module.scan_rows, module.scan_both, module.rerank)
print(json.dumps({"library": nbknn.__file__, "module": module.__file__,
                  "misses": sum(sum(f.stats.cache_misses.values()) for f in loops),
                  "hits": sum(sum(f.stats.cache_hits.values()) for f in loops)}))
"""


def library_zip(folder: Path) -> Path:
    root = Path(nbknn.__file__).parent
    target = folder / "nbknn.zip"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(target, "w") as archive:
        for path in root.rglob("*.py"):
            archive.write(path, Path("nbknn") / path.relative_to(root))
    return target


def probe(zip_path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(zip_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_application_loads_the_compiled_loops(tmp_path):
    first = probe(library_zip(tmp_path / "app-1"))
    second = probe(library_zip(tmp_path / "app-2"))
    for run, folder in ((first, "app-1"), (second, "app-2")):
        assert f"{folder}/nbknn.zip" in run["library"]
        assert ".zip" not in run["module"]
    assert first["module"] == second["module"]
    assert second["misses"] == 0 and second["hits"] >= 1, second
