"""The JVM tokeniser (Spark regexp_replace, ICU, lower, then regexp_extract_all or the project's
scanner of the default pattern) equals the Python reference."""

import random

import pytest
from pyspark.sql import functions as F

from nbknn.common.errors import ConfigError
from nbknn.inputs.tokenizer import (
    TokenizerConfig,
    token_text_column,
    tokenize,
    tokens_column,
    uses_token_scanner,
)

pytestmark = pytest.mark.spark

UNICODE_TEXTS = [
    "Crème Brûlée, naïve café: résumé of the Zürich Straße",  # accents, sharp s
    "ÉCOLE ÇA VA À L'ÎLE",  # capitals beyond ASCII in a text wholly in Latin-1
    "e\u0301te\u0301 vs \u00e9t\u00e9",  # decomposed vs precomposed accents (combining marks)
    "東京タワー と 北京大学 中文分词 한국어 텍스트",  # CJK, kana, hangul
    "ΣΟΦΟΣ ΟΔΥΣΣΕΥΣ and ΑΘΗΝΑ",  # Greek capitals, final sigma on lowercasing
    "İstanbul DIŞ IĞDIR",  # dotted capital I lowercases to two code points
    "don't won’t l'amour rock'n'roll",  # ASCII and typographic apostrophes
    "x² H₂O 3½ ١٢٣ 12,345.67 v2.0 COVID-19",  # superscripts, subscripts, Arabic-Indic digits
    "snake_case kebab-case CamelCase @user #tag e-mail@example.com",  # punctuation
    "עברית и русский текст ÆØÅ æøå",  # Hebrew, Cyrillic, Nordic
    "emoji 😀 are not words 👍🏽 but 𝐛𝐨𝐥𝐝 letters are",  # supplementary planes
    "ΟΔΥΣΣΕΥΣ\u2c2f ΣΑΣ\U00010570 Σ\ua7c0Σ",  # final sigma beside capitals newer than Unicode 13
    "caf\u00e9 cafe\u0301 \ufb01ne \uff21\uff22 \u2460\u2461 \u1e9b\u0323",  # normalisation cases
    "",
    "   \t  ",
]

PATTERNS = [
    TokenizerConfig(),
    TokenizerConfig(lowercase=False),
    TokenizerConfig(pattern=r"[\p{L}\p{M}\p{N}]+(?:['’][\p{L}\p{M}\p{N}]+)*"),
    TokenizerConfig(pattern=r"\p{L}+"),
    TokenizerConfig(normalization="NFC"),
    TokenizerConfig(normalization="NFKC"),
]


def joined_text(joined: bytearray | None) -> str | None:
    """token_text_column's bytes as text (strictly UTF-8: invalid bytes fail the test)."""
    return None if joined is None else bytes(joined).decode("utf-8")


def joined_form(tokens: list[str]) -> str | None:
    """The joined form token_text_column promises for ``tokens``, written out by hand."""
    return "".join(f"{token} " for token in tokens) or None


@pytest.mark.parametrize("config", PATTERNS, ids=["default", "no-lowercase", "apostrophes", "letters-only", "nfc", "nfkc"])
def test_spark_tokens_equal_python_reference_on_unicode_text(spark, config):
    frame = spark.createDataFrame([(i, t) for i, t in enumerate(UNICODE_TEXTS)], "i int, text string")
    scanners = [False, True] if config.pattern == TokenizerConfig().pattern else [False]
    columns = [tokens_column(frame["text"], config, scanner=s).alias(f"tokens_{s}") for s in scanners]
    if config.pattern == TokenizerConfig().pattern:
        columns += [token_text_column(frame["text"], config, scanner=s).alias(f"text_{s}") for s in scanners]
    rows = frame.select("i", *columns).orderBy("i").collect()
    for row in rows:
        expected = tokenize(UNICODE_TEXTS[row["i"]], config)
        for scanner in scanners:
            assert row[f"tokens_{scanner}"] == expected, (scanner, UNICODE_TEXTS[row["i"]])
            if config.pattern == TokenizerConfig().pattern:
                # The joined form: the same tokens, each followed by a space; none at all as null.
                assert joined_text(row[f"text_{scanner}"]) == joined_form(expected), (scanner, UNICODE_TEXTS[row["i"]])


def test_the_session_tokenises_the_default_pattern_with_the_scanner(spark):
    # The shared session has the jar, as every spark-submit of the project does (--jars).
    frame = spark.createDataFrame([("Hello wörld",)], "text string")
    assert uses_token_scanner(TokenizerConfig(), spark)
    assert "nbknn_token_runs" in frame.select(tokens_column(frame["text"], TokenizerConfig()))._jdf.queryExecution().toString()
    assert not uses_token_scanner(TokenizerConfig(pattern=r"\p{L}+"), spark)
    with pytest.raises(ConfigError, match="default pattern"):
        tokens_column(frame["text"], TokenizerConfig(pattern=r"\p{L}+"), scanner=True)
    # Another pattern's tokens may hold the separator: they are never joined.
    with pytest.raises(ConfigError, match="default pattern"):
        token_text_column(frame["text"], TokenizerConfig(pattern=r"\p{L}+ \p{L}+"))


# Characters of every kind the scanner tells apart: ASCII letters and digits and punctuation,
# letters and numbers beyond ASCII, combining marks, supplementary-plane letters (two UTF-16
# units), symbols there, spaces, and code points the pinned table leaves unassigned.
RUN_ALPHABET = "aZ09-_ 'é\u00b2\u0301\u0903\u20dd\u00aa\u2160\u0660\u4e2d\U0001d41b\U0001f600\U000e0001\u0378\ufffd\t"
ASCII_RUN_ALPHABET = "".join(c for c in RUN_ALPHABET if c.isascii())


@pytest.mark.parametrize("config", [TokenizerConfig(lowercase=False), TokenizerConfig()], ids=["as-is", "lowercased"])
def test_the_scanner_takes_the_same_runs_as_the_regex_on_random_mixtures(spark, config):
    """Runs of one, two and more token characters next to every kind of separator, at both ends of
    the text: the boundaries the sweep below (each code point doubled, the pairs apart) does not try.
    A thousand more of the ASCII characters alone, which the scanner takes straight from the raw text."""
    generator = random.Random(7)
    texts = ["".join(generator.choice(alphabet) for _ in range(generator.randint(0, 12)))
             for alphabet in (RUN_ALPHABET, ASCII_RUN_ALPHABET) for _ in range(3000 if alphabet == RUN_ALPHABET else 1000)]
    frame = spark.createDataFrame(list(enumerate(texts)), "i int, text string")
    rows = frame.select("i", tokens_column(F.col("text"), config, scanner=True).alias("tokens"),
                        token_text_column(F.col("text"), config, scanner=True).alias("joined")).collect()
    assert len(rows) == len(texts)
    differing = [texts[r["i"]] for r in rows if r["tokens"] != tokenize(texts[r["i"]], config)]
    assert differing == []
    differing = [texts[r["i"]] for r in rows if joined_text(r["joined"]) != joined_form(tokenize(texts[r["i"]], config))]
    assert differing == []
    # Not vacuous: single token characters were skipped and runs of two kept, many times over, in
    # texts of both paths, capitals included.
    for ascii_only in (True, False):
        texts_of_path = [text for text in texts if text.isascii() == ascii_only]
        assert sum(len(tokenize(text, config)) for text in texts_of_path) > 100
        assert sum(text.count("Z") for text in texts_of_path) > 100


def test_reference_agrees_on_a_real_corpus(spark, corpus):
    docs = corpus("20newsgroups", "test", 400)
    frame = spark.createDataFrame([(d["id"], d["text"]) for d in docs], "id string, text string")
    config = TokenizerConfig()
    spark_tokens = {r["id"]: r["tokens"] for r in frame.select("id", tokens_column(frame["text"], config).alias("tokens")).collect()}
    assert all(spark_tokens[d["id"]] == tokenize(d["text"], config) for d in docs)


# --- every code point through both engines ---------------------------------------------------

SWEEP_CONFIGS = {
    "default": TokenizerConfig(),
    "nfkc": TokenizerConfig(normalization="NFKC"),
    "nfc_no_lowercase": TokenizerConfig(normalization="NFC", lowercase=False),
}
SWEEP_CHUNK = 4096


def _sweep_chunks() -> list[list[int]]:
    """Every code point but the surrogates, in chunks; then the ASCII range again on its own, the
    only chunk whose text takes the pinning's shortcut for ASCII texts."""
    points = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    return [points[i:i + SWEEP_CHUNK] for i in range(0, len(points), SWEEP_CHUNK)] + [list(range(0x80))]


def _sweep_text(chunk: list[int]) -> str:
    # Each code point twice (the default pattern wants two characters), the pairs apart.
    return " ".join(chr(cp) * 2 for cp in chunk)


def _first_difference(chunk, jvm_tokens, config) -> str:
    """Names the code point at which the JVM's tokens of a chunk part from the reference's."""
    done = 0
    for cp in chunk:
        expected = tokenize(chr(cp) * 2, config)
        if jvm_tokens[done:done + len(expected)] != expected:
            return f"U+{cp:04X}: Python {expected}, JVM {jvm_tokens[done:done + len(expected)]}"
        done += len(expected)
    return "the chunks differ, no single code point does"


def test_every_code_point_tokenises_the_same_in_the_jvm_and_in_python(spark):
    """A sweep over all 1,112,064 code points (every assigned one, and every one that is not),
    each doubled, through both engines, for the default tokeniser and both normalisations, each
    extracted both by the scanner and by Spark's regex."""
    chunks = _sweep_chunks()
    frame = spark.createDataFrame([(i, _sweep_text(c)) for i, c in enumerate(chunks)], "i int, text string")
    columns = [tokens_column(F.col("text"), config, scanner=scanner).alias(f"{name}_{scanner}")
               for name, config in SWEEP_CONFIGS.items() for scanner in (True, False)]
    rows = frame.select("i", *columns).collect()
    assert len(rows) == len(chunks)
    tokens = 0
    for row in rows:
        chunk = chunks[row["i"]]
        text = _sweep_text(chunk)
        for name, config in SWEEP_CONFIGS.items():
            expected = tokenize(text, config)
            for scanner in (True, False):
                found = row[f"{name}_{scanner}"]
                assert found == expected, f"{name}, scanner {scanner}: {_first_difference(chunk, found, config)}"
            tokens += len(expected)
    # Not vacuous: the letters, marks and numbers of Unicode 13 made tokens in every configuration.
    assert tokens > 3 * 130_000


@pytest.mark.parametrize("ascii_possible", [True, False], ids=["any-text", "after-the-ascii-path"])
def test_the_jvm_replaces_exactly_the_code_points_the_table_leaves_unassigned(spark, ascii_possible):
    """On Java 17 an unassigned code point makes no token whether replaced or not, so the sweep
    above cannot see the JVM's replacement class; here its output is compared with the table,
    with and without the short cut for ASCII texts (the scanner's path takes those apart first)."""
    from nbknn.inputs.tokenizer import UNASSIGNED_REPLACEMENT, pinned_to_table
    from nbknn.inputs.unicode_table import ASSIGNED_RANGES

    assigned = bytearray(0x110000)
    for first, last in ASSIGNED_RANGES:
        assigned[first:last + 1] = b"\x01" * (last - first + 1)
    # The sweep's chunks, and texts at the edge of the short cut for texts in the first run.
    chunks = _sweep_chunks() + [[ord(c) for c in text] for text in
                                ("plain ascii", "x\u0377y", "x\u0378y", "caf\u00e9 \u0379", "\U000e0000", "\u0530")]
    frame = spark.createDataFrame([(i, "".join(map(chr, c))) for i, c in enumerate(chunks)], "i int, text string")
    replaced = frame.select("i", pinned_to_table(F.col("text"), ascii_possible).alias("text")).collect()
    differing = []
    for row in replaced:
        expected = "".join(chr(cp) if assigned[cp] else UNASSIGNED_REPLACEMENT for cp in chunks[row["i"]])
        if row["text"] != expected:
            differing.append(next(f"U+{cp:04X}" for cp, a, b in zip(chunks[row["i"]], row["text"], expected) if a != b))
    assert len(replaced) == len(chunks)
    assert differing == []
