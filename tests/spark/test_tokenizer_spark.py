"""The JVM tokeniser (Spark lower + regexp_extract_all) equals the Python reference."""

import pytest

from nbknn.inputs.tokenizer import TokenizerConfig, tokenize, tokens_column

pytestmark = pytest.mark.spark

UNICODE_TEXTS = [
    "Crème Brûlée, naïve café: résumé of the Zürich Straße",  # accents, sharp s
    "e\u0301te\u0301 vs \u00e9t\u00e9",  # decomposed vs precomposed accents (combining marks)
    "東京タワー と 北京大学 中文分词 한국어 텍스트",  # CJK, kana, hangul
    "ΣΟΦΟΣ ΟΔΥΣΣΕΥΣ and ΑΘΗΝΑ",  # Greek capitals, final sigma on lowercasing
    "İstanbul DIŞ IĞDIR",  # dotted capital I lowercases to two code points
    "don't won’t l'amour rock'n'roll",  # ASCII and typographic apostrophes
    "x² H₂O 3½ ١٢٣ 12,345.67 v2.0 COVID-19",  # superscripts, subscripts, Arabic-Indic digits
    "snake_case kebab-case CamelCase @user #tag e-mail@example.com",  # punctuation
    "עברית и русский текст ÆØÅ æøå",  # Hebrew, Cyrillic, Nordic
    "emoji 😀 are not words 👍🏽 but 𝐛𝐨𝐥𝐝 letters are",  # supplementary planes
    "",
    "   \t  ",
]

PATTERNS = [
    TokenizerConfig(),
    TokenizerConfig(lowercase=False),
    TokenizerConfig(pattern=r"[\p{L}\p{M}\p{N}]+(?:['’][\p{L}\p{M}\p{N}]+)*"),
    TokenizerConfig(pattern=r"\p{L}+"),
]


@pytest.mark.parametrize("config", PATTERNS, ids=["default", "no-lowercase", "apostrophes", "letters-only"])
def test_spark_tokens_equal_python_reference_on_unicode_text(spark, config):
    frame = spark.createDataFrame([(i, t) for i, t in enumerate(UNICODE_TEXTS)], "i int, text string")
    rows = frame.select("i", tokens_column(frame["text"], config).alias("tokens")).orderBy("i").collect()
    for row in rows:
        assert row["tokens"] == tokenize(UNICODE_TEXTS[row["i"]], config), UNICODE_TEXTS[row["i"]]


def test_reference_agrees_on_a_real_corpus(spark, corpus):
    docs = corpus("20newsgroups", "test", 400)
    frame = spark.createDataFrame([(d["id"], d["text"]) for d in docs], "id string, text string")
    config = TokenizerConfig()
    spark_tokens = {r["id"]: r["tokens"] for r in frame.select("id", tokens_column(frame["text"], config).alias("tokens")).collect()}
    assert all(spark_tokens[d["id"]] == tokenize(d["text"], config) for d in docs)
