"""Generate spark_apps/nbknn/inputs/unicode_table.py: the code points the tokeniser treats as assigned.

    .venv/bin/python scripts/generate_unicode_table.py            # rewrite the table
    .venv/bin/python scripts/generate_unicode_table.py --check    # exit 1 if it differs

The tokeniser pins its Unicode version to the oldest engine it runs on: the JVM of Java 17, whose
``java.lang.Character`` implements Unicode 13.0. Both tokenisers replace every code point outside
this table by U+FFFD before anything else, so neither engine ever sees a character that the other
might not know (see nbknn.inputs.tokenizer). The table is computed by asking that JVM, through
Spark's ``java_method``, for the general category of every code point; a code point is assigned
unless its category is UNASSIGNED (Cn). Surrogates and private-use code points count as assigned.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = REPO_ROOT / "spark_apps" / "nbknn" / "inputs" / "unicode_table.py"
# java.specification.version -> the Unicode version of its java.lang.Character (the Java SE spec).
JAVA_UNICODE = {"17": "13.0"}
LAST_CODE_POINT = 0x10FFFF


def assigned_ranges(categories: list[int]) -> list[tuple[int, int]]:
    """Inclusive (first, last) runs of code points whose Java category is not UNASSIGNED (0)."""
    runs: list[tuple[int, int]] = []
    for code_point, category in enumerate(categories):
        if category == 0:
            continue
        if runs and runs[-1][1] == code_point - 1:
            runs[-1] = (runs[-1][0], code_point)
        else:
            runs.append((code_point, code_point))
    return runs


def jvm_categories() -> tuple[str, list[int]]:
    """(java.specification.version, the java.lang.Character type of every code point)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        java = spark.range(1).selectExpr(
            "java_method('java.lang.System', 'getProperty', 'java.specification.version')"
        ).first()[0]
        rows = (
            spark.range(0, LAST_CODE_POINT + 1)
            .selectExpr("id", "java_method('java.lang.Character', 'getType', cast(id as int)) AS t")
            .orderBy("id")
            .collect()
        )
    finally:
        spark.stop()
    return java, [int(row["t"]) for row in rows]


def render(java: str, runs: list[tuple[int, int]]) -> str:
    lines = [
        '"""The code points assigned in the Unicode version the tokeniser pins (generated: do not edit).',
        "",
        "Written by scripts/generate_unicode_table.py from java.lang.Character of Java "
        f"{java}, which implements Unicode {JAVA_UNICODE[java]}.",
        '"""',
        "",
        f'UNICODE_VERSION = "{JAVA_UNICODE[java]}"',
        "",
        "# Inclusive (first, last) code point runs, ascending.",
        "ASSIGNED_RANGES = (",
    ]
    lines += [f"    (0x{first:04X}, 0x{last:04X})," for first, last in runs]
    lines.append(")")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is out of date")
    args = parser.parse_args(argv)
    java, categories = jvm_categories()
    if java not in JAVA_UNICODE:
        print(f"the JVM is Java {java}; this table is pinned to Java 17 (Unicode 13.0)", file=sys.stderr)
        return 2
    text = render(java, assigned_ranges(categories))
    if args.check:
        same = OUTPUT.read_text() == text
        print("unicode_table.py is current" if same else "unicode_table.py is out of date")
        return 0 if same else 1
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
