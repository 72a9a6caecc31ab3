"""The one tokeniser of the project: training and prediction both tokenise through it.

Spark runs it in the JVM (``regexp_replace``, ICU's normaliser through ``reflect``, ``lower``,
``regexp_extract_all`` or the project's scanner; no Python UDF); ``tokenize`` is the Python
reference of the same definition, used to feed scikit-learn in the equivalence tests. Both apply
the same steps:

1. **Pin the Unicode version.** Every code point not assigned in Unicode 13.0 (the version of
   Java 17, the oldest engine it runs on; the table is :mod:`nbknn.inputs.unicode_table`) becomes
   U+FFFD, which no pattern class treats as a letter. The later steps, in either engine, then only
   see characters that both engines know: Python's ``regex`` module and ``unicodedata`` are on a
   newer Unicode than the JVM, and would otherwise find letters the JVM does not (the tests sweep
   every code point through both). A newer JVM does not change the tokens of an existing model.
2. **Normalise** (optional): ``NFC`` or ``NFKC``. Unicode's normalisation stability policy makes
   the result of text in assigned characters the same in every later version, so ICU's normaliser
   (in Spark's classpath) and Python's ``unicodedata`` agree on it.
3. **Lowercase** (optional): Java's ``String.toLowerCase`` and Python's ``str.lower``, full case
   mapping (final sigma included).
4. **Extract** the matches of the pattern, whole matches in order. For the default pattern the
   JVM runs a scanner (``spark_apps/jvm/TokenRuns.java``, shipped as a jar with ``--jars``) that
   takes the same runs without the regex engine, in about a third of its time; a session without
   the jar (no JDK where the task was submitted) uses ``regexp_extract_all``, same tokens. For
   the Python scorers the tokens come as one UTF-8 byte string per document, each token followed
   by a space (:func:`python_tokens_column`), which crosses to Python for less than a list. A
   text wholly in ASCII, which steps 1-3 leave as it is but for the case of its letters, goes to
   the scanner raw and is lowercased there (``spark_apps/jvm/AsciiTokenRuns.java``, and for the
   joined form ``AsciiTokenBytes.java``, bytes in and out): Spark's passes over it for those
   steps cost more than the scan.

The pattern language is the common subset of Java's ``java.util.regex`` and Python's ``regex``
module. The default spells its character classes with Unicode properties (``\\p{L}`` letters,
``\\p{M}`` combining marks, ``\\p{N}`` numbers) because ``\\w`` differs between the two engines:
Java's ``\\w`` is ASCII-only unless ``(?U)`` is given, and even then it disagrees with Python's
``\\w`` on combining marks and numeric symbols such as the superscript two.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import regex

from nbknn.common.errors import ConfigError
from nbknn.contract import (
    DEFAULT_NORMALIZATION,
    DEFAULT_TOKEN_PATTERN,
    NORMALIZATIONS,
    TOKEN_UNICODE_VERSION,
    token_pattern_problem,
)
from nbknn.inputs.unicode_table import ASSIGNED_RANGES, UNICODE_VERSION

# What replaces a code point the pinned Unicode version does not assign.
UNASSIGNED_REPLACEMENT = "\ufffd"
# The scanner of the default pattern: its classes in the jar (the tokens as a list, and as one
# text, each token followed by a space), and the names this module registers them under.
TOKEN_SCANNER_CLASS = "nbknn.jvm.TokenRuns"
TOKEN_SCANNER_FUNCTION = "nbknn_token_runs"
TOKEN_TEXT_CLASS = "nbknn.jvm.TokenText"
TOKEN_TEXT_FUNCTION = "nbknn_token_text"
# The same two for an all-ASCII text, straight from its raw form (null for any other text); the
# joined form as UTF-8 bytes, from the text's bytes.
ASCII_TOKEN_RUNS_CLASS = "nbknn.jvm.AsciiTokenRuns"
ASCII_TOKEN_RUNS_FUNCTION = "nbknn_ascii_token_runs"
ASCII_TOKEN_BYTES_CLASS = "nbknn.jvm.AsciiTokenBytes"
ASCII_TOKEN_BYTES_FUNCTION = "nbknn_ascii_token_bytes"
# What follows each token of :func:`token_text_column`: no token of the default pattern holds it.
# After every token, the last one too, so that the whole column's bytes split at it into the
# tokens in order, each with its terminator (:func:`split_tokens`), with no row boundary to add.
TOKEN_TERMINATOR = " "
# ICU4J ships with Spark (its collations use it); compose(text, compat) is NFC, or NFKC when compat.
ICU_NORMALIZER = "com.ibm.icu.text.Normalizer"

log = logging.getLogger(__name__)

if UNICODE_VERSION != TOKEN_UNICODE_VERSION:
    raise ImportError(f"unicode_table.py is Unicode {UNICODE_VERSION}, the contract pins {TOKEN_UNICODE_VERSION}")


@dataclass(frozen=True)
class TokenizerConfig:
    """What defines a tokenisation; recorded in the model manifest so prediction reuses it."""

    pattern: str = DEFAULT_TOKEN_PATTERN
    lowercase: bool = True
    normalization: str = DEFAULT_NORMALIZATION

    def __post_init__(self) -> None:
        validate_pattern(self.pattern)
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {NORMALIZATIONS} (got {self.normalization!r})")

    def to_dict(self) -> dict:
        return {
            "pattern": self.pattern,
            "lowercase": self.lowercase,
            "normalization": self.normalization,
            "unicode_version": TOKEN_UNICODE_VERSION,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "TokenizerConfig":
        """The configuration a manifest records; one from before normalisation existed had none.

        A model recorded with another pinned Unicode version is refused: its terms were cut by
        another table, and this code cannot reproduce them.
        """
        version = data.get("unicode_version", TOKEN_UNICODE_VERSION)
        if version != TOKEN_UNICODE_VERSION:
            raise ConfigError(
                f"the model was tokenised with Unicode {version}, this code pins Unicode {TOKEN_UNICODE_VERSION}"
            )
        return cls(
            pattern=data["pattern"],
            lowercase=bool(data["lowercase"]),
            normalization=data.get("normalization", DEFAULT_NORMALIZATION),
        )


def validate_pattern(pattern: str) -> None:
    """Refuse an empty pattern, one that does not compile, or one that can match the empty string."""
    problem = token_pattern_problem(pattern)
    if problem:
        raise ConfigError(problem)


def _class_char(code_point: int) -> str:
    """One code point inside a character class, spelled the same for Java and Python ``regex``:
    ``\\uXXXX`` in the BMP (the escape both read), the character itself above it (neither shares
    an escape for those, and no class metacharacter lies there)."""
    return f"\\u{code_point:04X}" if code_point <= 0xFFFF else chr(code_point)


def _without_surrogates(runs) -> list[tuple[int, int]]:
    """The runs minus U+D800..U+DFFF: a lone surrogate is no character, and a surrogate escape in a
    Java class could pair with its neighbour; it counts as unassigned."""
    kept = []
    for first, last in runs:
        for part in ((first, min(last, 0xD7FF)), (max(first, 0xE000), last)):
            if part[0] <= part[1]:
                kept.append(part)
    return kept


@lru_cache(maxsize=1)
def unassigned_pattern() -> str:
    """A class matching one code point outside the pinned table: the Python reference's (its
    ``regex`` module compiles a class into a set; the JVM reads :func:`jvm_unassigned_pattern`)."""
    runs = "".join(f"{_class_char(a)}-{_class_char(b)}" for a, b in _without_surrogates(ASSIGNED_RANGES))
    return f"[^{runs}]"


# Runs per leaf class of the JVM's search tree (below): a leaf is scanned run by run.
_LEAF_RUNS = 4
_LAST_CODE_POINT = 0x10FFFF


def _complement(runs) -> list[tuple[int, int]]:
    """The code points of U+0000..U+10FFFF outside ascending disjoint ``runs``, as runs."""
    gaps, start = [], 0
    for first, last in runs:
        if first > start:
            gaps.append((start, first - 1))
        start = last + 1
    if start <= _LAST_CODE_POINT:
        gaps.append((start, _LAST_CODE_POINT))
    return gaps


def _search_tree_class(runs: list[tuple[int, int]], low: int, high: int) -> str:
    """A Java class matching the code points of ``runs`` (all within low..high) in a few range
    tests: a binary search spelled with nested classes, ``[[low-split)&&left]`` united with
    ``[[split-high]&&right]``; Java evaluates ``&&`` left to right and stops at a false bound."""
    if len(runs) <= _LEAF_RUNS:
        return "[" + "".join(f"{_class_char(a)}-{_class_char(b)}" for a, b in runs) + "]"
    middle = len(runs) // 2
    split = runs[middle][0]
    left = _search_tree_class(runs[:middle], low, split - 1)
    right = _search_tree_class(runs[middle:], split, high)
    return (f"[[[{_class_char(low)}-{_class_char(split - 1)}]&&{left}]"
            f"[[{_class_char(split)}-{_class_char(high)}]&&{right}]]")


def beyond_first_assigned_run() -> str:
    """A class matching any code point after the table's first run of assigned code points."""
    first, last = ASSIGNED_RANGES[0]
    if first != 0:
        raise AssertionError("the table's first run must start at U+0000")
    return f"[^{_class_char(first)}-{_class_char(last)}]"


@lru_cache(maxsize=1)
def jvm_unassigned_pattern() -> str:
    """The set of :func:`unassigned_pattern` for Java's regex, in about 20 range tests per
    character instead of one per run: Java chains the runs of a flat class into nested calls, so
    every character of the text would pay for all ~680 of them. Surrogates are left out: a string
    in the JVM (decoded from Spark's UTF-8) never holds a lone one."""
    unassigned = _complement(sorted([*_without_surrogates(ASSIGNED_RANGES), (0xD800, 0xDFFF)]))
    return _search_tree_class(unassigned, 0, _LAST_CODE_POINT)


@lru_cache(maxsize=1)
def _unassigned_regex():
    return regex.compile(unassigned_pattern())


def tokenize(text: str, config: TokenizerConfig = TokenizerConfig()) -> list[str]:
    """Python reference: the tokens of ``text`` in order of appearance."""
    text = _unassigned_regex().sub(UNASSIGNED_REPLACEMENT, text)
    if config.normalization != "none":
        text = unicodedata.normalize(config.normalization, text)
    if config.lowercase:
        text = text.lower()
    # finditer + group(0), not findall: findall returns capture groups when the pattern has any,
    # while Spark's regexp_extract_all(..., 0) returns whole matches.
    return [match.group(0) for match in regex.finditer(config.pattern, text)]


def pinned_to_table(text_col, ascii_possible: bool = True):
    """Spark Column: ``text_col`` with every code point the table leaves unassigned as U+FFFD.
    ``ascii_possible``: False where the ASCII texts were taken apart before (the scanner's path)."""
    from pyspark.sql import functions as F

    # Column arguments (not a SQL string) so that backslashes reach Java's regex unescaped. A text
    # wholly in the first assigned run (ASCII, Latin-1, ...) has nothing to replace: one range test
    # per character finds out, and only the other texts go through the search tree. An ASCII text
    # (as many characters as bytes) is in that run too: counting its UTF-8 lead bytes is cheaper
    # than decoding it for the regex, and most texts of a Latin-script corpus are ASCII.
    replaced = (
        F.when(text_col.rlike(beyond_first_assigned_run()),
               F.regexp_replace(text_col, F.lit(jvm_unassigned_pattern()), F.lit(UNASSIGNED_REPLACEMENT)))
        .otherwise(text_col)
    )
    if not ascii_possible:
        return replaced
    return F.when(F.length(text_col) == F.octet_length(text_col), text_col).otherwise(replaced)


def token_scanner_registered(spark) -> bool:
    """Registers the scanner in ``spark`` when its jar is on the JVM's class path; says whether."""
    from pyspark.sql.types import ArrayType, BinaryType, StringType

    if not spark._jvm.org.apache.spark.util.Utils.classIsLoadable(TOKEN_SCANNER_CLASS):
        return False
    for function, java_class, returns in (
        (TOKEN_SCANNER_FUNCTION, TOKEN_SCANNER_CLASS, ArrayType(StringType())),
        (TOKEN_TEXT_FUNCTION, TOKEN_TEXT_CLASS, StringType()),
        (ASCII_TOKEN_RUNS_FUNCTION, ASCII_TOKEN_RUNS_CLASS, ArrayType(StringType())),
        (ASCII_TOKEN_BYTES_FUNCTION, ASCII_TOKEN_BYTES_CLASS, BinaryType()),
    ):
        spark.udf.registerJavaFunction(function, java_class, returns)
    return True


def uses_token_scanner(config: TokenizerConfig, spark=None) -> bool:
    """Whether :func:`tokens_column` extracts with the scanner: the default pattern, in a session
    (``spark``, else the active one) that has the jar."""
    from pyspark.sql import SparkSession

    if config.pattern != DEFAULT_TOKEN_PATTERN:
        return False
    spark = spark or SparkSession.getActiveSession()
    if spark is None or not token_scanner_registered(spark):
        log.warning("the token scanner's jar is not on the class path: tokenising with regexes "
                    "(the same tokens, more slowly)")
        return False
    return True


def tokens_column(text_col, config: TokenizerConfig, scanner: bool | None = None):
    """Spark Column of ``array<string>``: the tokens of ``text_col``, computed in the JVM.

    ``scanner``: extract with the scanner (True; the pattern must be the default and the active
    session must have the jar), with Spark's regex (False), or whichever applies (None)."""
    from pyspark.sql import functions as F

    if _scanner_choice(config, scanner):
        # An ASCII text skips steps 1-3 (the JVM's passes over it): coalesce evaluates the
        # general path only for the others.
        return F.coalesce(F.call_udf(ASCII_TOKEN_RUNS_FUNCTION, text_col, F.lit(config.lowercase)),
                          F.call_udf(TOKEN_SCANNER_FUNCTION, _prepared_text(text_col, config, ascii_possible=False)))
    return F.regexp_extract_all(_prepared_text(text_col, config), F.lit(config.pattern), F.lit(0))


def token_text_column(text_col, config: TokenizerConfig, scanner: bool | None = None):
    """Spark Column of ``binary``: the UTF-8 bytes of the tokens of the default pattern, each
    followed by :data:`TOKEN_TERMINATOR`, null when there are none. For Python consumers
    (:func:`split_tokens` splits it): one byte string per document crosses to a Python worker in
    Arrow for a fraction of the cost of a list of strings, and bytes need no UTF-8 decoding or
    checking on either side. ``scanner`` as for :func:`tokens_column`."""
    from pyspark.sql import functions as F

    if config.pattern != DEFAULT_TOKEN_PATTERN:
        raise ConfigError("joined tokens need the default pattern, whose tokens hold no terminator")
    if _scanner_choice(config, scanner):
        # As in tokens_column; the ASCII path gives no bytes for no token, so that coalesce keeps it.
        joined = F.coalesce(
            F.call_udf(ASCII_TOKEN_BYTES_FUNCTION, text_col.cast("binary"), F.lit(config.lowercase)),
            F.call_udf(TOKEN_TEXT_FUNCTION, _prepared_text(text_col, config, ascii_possible=False)).cast("binary"))
    else:
        tokens = tokens_column(text_col, config, scanner=False)
        joined = F.when(F.size(tokens) > 0,
                        F.concat(F.array_join(tokens, TOKEN_TERMINATOR), F.lit(TOKEN_TERMINATOR))).cast("binary")
    return F.nullif(joined, F.lit("").cast("binary"))


def python_tokens_column(text_col, config: TokenizerConfig):
    """The tokens as a Python consumer takes them (:func:`split_tokens` reads either form): joined
    for the default pattern, a list for any other, whose tokens may hold the terminator."""
    if config.pattern == DEFAULT_TOKEN_PATTERN:
        return token_text_column(text_col, config)
    return tokens_column(text_col, config)


class SplitTokens(NamedTuple):
    """A column's tokens as :func:`split_tokens` gives them."""

    values: object  # pyarrow array of every token, in row order
    lengths: object  # numpy int64, the number of tokens of each row (0 for a null row)
    terminated: bool  # each value keeps its TOKEN_TERMINATOR (the joined form)


def split_tokens(tokens) -> SplitTokens:
    """Every token of a pyarrow column of :func:`python_tokens_column`, either form.

    A list column (``list<string>`` or ``list<binary>``) gives its values as they are. A joined
    column (binary or string, as :func:`token_text_column` writes it) gives ``binary`` tokens that
    keep their :data:`TOKEN_TERMINATOR` (look them up with it appended, :func:`terminated`):
    cutting the column's bytes after each terminator needs neither a copy of them nor a list per
    row, a third of the time of pyarrow's ``split_pattern``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    if pa.types.is_list(tokens.type) or pa.types.is_large_list(tokens.type):
        lengths = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False)
        return SplitTokens(pc.list_flatten(tokens), lengths.astype(np.int64), False)
    binary = pa.types.is_binary(tokens.type) or pa.types.is_large_binary(tokens.type)
    large = pa.types.is_large_binary(tokens.type) or pa.types.is_large_string(tokens.type)
    offset_type, flat_type = (np.int64, pa.large_binary()) if large else (np.int32, pa.binary())
    if tokens.null_count:
        # A null row may still span bytes (Arrow allows it); filled, it spans none.
        tokens = pc.fill_null(tokens, pa.scalar(b"" if binary else "", type=tokens.type))
    _, offsets_buffer, data = tokens.buffers()
    offsets = np.frombuffer(offsets_buffer, offset_type, len(tokens) + 1,
                            tokens.offset * np.dtype(offset_type).itemsize).astype(np.int64)
    start, end = int(offsets[0]), int(offsets[-1])
    text = np.frombuffer(data, np.uint8, end - start, start) if end > start else np.zeros(0, np.uint8)
    ends = np.flatnonzero(text == ord(TOKEN_TERMINATOR))
    row_ends = offsets[1:][offsets[1:] > offsets[:-1]] - start
    if row_ends.size and np.any(text[row_ends - 1] != ord(TOKEN_TERMINATOR)):
        raise ValueError(f"joined tokens must each end with {TOKEN_TERMINATOR!r}, the last of a row too")
    flat_offsets = np.empty(ends.size + 1, offset_type)
    flat_offsets[0] = start
    np.add(ends, start + 1, out=flat_offsets[1:], casting="unsafe")
    flat = pa.Array.from_buffers(flat_type, int(ends.size), [None, pa.py_buffer(flat_offsets),
                                                            data if data is not None else pa.py_buffer(b"")])
    return SplitTokens(flat, np.diff(np.searchsorted(ends, offsets - start)), True)


def terminated(terms, binary_type):
    """A pyarrow array of terms as :func:`split_tokens` gives the joined form's tokens: each
    followed by :data:`TOKEN_TERMINATOR`, as ``binary_type`` (the tokens' binary or large_binary)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    terminator = pa.scalar(TOKEN_TERMINATOR.encode(), type=binary_type)
    return pc.binary_join_element_wise(terms.cast(binary_type), terminator, pa.scalar(b"", type=binary_type))


def _scanner_choice(config: TokenizerConfig, scanner: bool | None) -> bool:
    if scanner is None:
        return uses_token_scanner(config)
    if scanner and not uses_token_scanner(config):
        raise ConfigError("the token scanner needs the default pattern and its jar in the session")
    return scanner


def _prepared_text(text_col, config: TokenizerConfig, ascii_possible: bool = True):
    """Steps 1-3 of the module's tokeniser: pinned, normalised, lowercased as configured
    (``ascii_possible`` as for :func:`pinned_to_table`)."""
    from pyspark.sql import functions as F

    source = pinned_to_table(text_col, ascii_possible)
    if config.normalization != "none":
        compat = F.lit(config.normalization == "NFKC")
        source = F.reflect(F.lit(ICU_NORMALIZER), F.lit("compose"), source, compat)
    if config.lowercase:
        source = F.lower(source)
    return source
