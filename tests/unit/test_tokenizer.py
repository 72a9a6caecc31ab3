"""The Python reference tokeniser (the Spark side is proven identical in tests/spark)."""

import pytest

from nbknn.inputs.tokenizer import DEFAULT_TOKEN_PATTERN, TokenizerConfig, tokenize


def test_default_tokeniser_lowercases_and_keeps_unicode_words():
    text = "Crème Brûlée costs 12 EUR at Zürich's café; 東京 ok x"
    assert tokenize(text) == ["crème", "brûlée", "costs", "12", "eur", "at", "zürich", "café", "東京", "ok"]


def test_single_characters_and_punctuation_are_not_tokens():
    assert tokenize("a b c -- !! ?? ... don't") == ["don"]


def test_lowercase_can_be_switched_off():
    assert tokenize("Hello World", TokenizerConfig(lowercase=False)) == ["Hello", "World"]


def test_whole_matches_are_returned_even_when_the_pattern_has_groups():
    config = TokenizerConfig(pattern=r"(\p{L})\p{L}+")
    assert tokenize("alpha beta", config) == ["alpha", "beta"]


@pytest.mark.parametrize(
    "pattern, message",
    [("", "must not be empty"), ("[a-", "does not compile"), ("a*", "must not match the empty string")],
)
def test_bad_patterns_are_refused(pattern, message):
    with pytest.raises(ValueError, match=message):
        TokenizerConfig(pattern=pattern)


def test_config_round_trips_through_its_manifest_form():
    config = TokenizerConfig(pattern=r"\p{L}+", lowercase=False)
    assert TokenizerConfig.from_dict(config.to_dict()) == config
    assert TokenizerConfig().pattern == DEFAULT_TOKEN_PATTERN


# --- the pinned Unicode version and normalisation -------------------------------------------

# Published with Unicode 13.0: 143,859 characters (graphic and format ones), beside 65 controls,
# 137,468 private-use code points and 2,048 surrogates, all assigned.
UNICODE_13_CHARACTERS = 143_859


def test_the_table_is_unicode_13_by_its_published_character_count():
    from nbknn.inputs.unicode_table import ASSIGNED_RANGES, UNICODE_VERSION

    assigned = sum(last - first + 1 for first, last in ASSIGNED_RANGES)
    assert UNICODE_VERSION == "13.0"
    assert assigned - 65 - 137_468 - 2_048 == UNICODE_13_CHARACTERS


def test_the_table_only_holds_code_points_pythons_unicode_assigns_too():
    import unicodedata

    from nbknn.inputs.unicode_table import ASSIGNED_RANGES

    unknown = [cp for first, last in ASSIGNED_RANGES for cp in range(first, last + 1)
               if unicodedata.category(chr(cp)) == "Cn"]
    assert unknown == []


def test_letters_newer_than_unicode_13_are_not_letters():
    # U+0870 ARABIC LETTER ALEF WITH ATTACHED FATHA (Unicode 14) and U+1E030 (Unicode 15): letters
    # for Python's regex module, unknown to Java 17; they split a word like any non-letter.
    import regex

    assert regex.fullmatch(r"\p{L}+", "\u0870\u0870")
    assert tokenize("ab\u0870\u0870cd") == ["ab", "cd"]
    assert tokenize("\u0870\u0870 \U0001E030\U0001E030") == []


def test_nfc_makes_composed_and_decomposed_spellings_one_term():
    composed, decomposed = "caf\u00e9 na\u00efve", "cafe\u0301 nai\u0308ve"
    assert tokenize(composed) != tokenize(decomposed)
    nfc = TokenizerConfig(normalization="NFC")
    assert tokenize(composed, nfc) == tokenize(decomposed, nfc) == ["café", "naïve"]


def test_nfkc_folds_compatibility_forms_and_nfc_does_not():
    text = "\ufb01ne \uff21\uff22\uff23 x\u00b2y"  # ﬁ ligature, full-width ABC, superscript two
    assert tokenize(text, TokenizerConfig(normalization="NFKC")) == ["fine", "abc", "x2y"]
    assert tokenize(text, TokenizerConfig(normalization="NFC")) == ["\ufb01ne", "\uff41\uff42\uff43", "x\u00b2y"]


def test_an_unknown_normalization_is_refused():
    with pytest.raises(ValueError, match="normalization must be one of"):
        TokenizerConfig(normalization="NFD")


def test_a_manifest_from_before_normalisation_reads_as_none_and_another_unicode_is_refused():
    old = {"pattern": DEFAULT_TOKEN_PATTERN, "lowercase": True}
    assert TokenizerConfig.from_dict(old) == TokenizerConfig()
    with pytest.raises(ValueError, match="Unicode 15.0"):
        TokenizerConfig.from_dict({**TokenizerConfig().to_dict(), "unicode_version": "15.0"})


def test_same_tokenizer_treats_missing_fields_as_the_defaults():
    from nbknn.contract import same_tokenizer, tokenizer_record

    old = {"pattern": DEFAULT_TOKEN_PATTERN, "lowercase": True}
    assert same_tokenizer(old, TokenizerConfig().to_dict())
    assert same_tokenizer(old, tokenizer_record(DEFAULT_TOKEN_PATTERN, True))
    assert not same_tokenizer(old, TokenizerConfig(normalization="NFC").to_dict())


def test_the_jvms_search_tree_class_holds_exactly_the_unassigned_code_points():
    """The JVM's pattern (nested classes, ``&&`` bounds) read by ``regex`` in its V1 mode, which
    has Java's set syntax, against the table itself: every code point but the surrogates (which a
    JVM string decoded from UTF-8 cannot hold). The Spark sweep checks the same through Java."""
    import regex

    from nbknn.inputs.tokenizer import jvm_unassigned_pattern
    from nbknn.inputs.unicode_table import ASSIGNED_RANGES

    assigned = bytearray(0x110000)
    for first, last in ASSIGNED_RANGES:
        assigned[first:last + 1] = b"\x01" * (last - first + 1)
    tree = regex.compile(jvm_unassigned_pattern(), regex.V1)
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    matched = {ord(m.group()) for m in tree.finditer(text)}
    expected = {c for c in range(0x110000) if not assigned[c] and not 0xD800 <= c <= 0xDFFF}
    assert matched == expected
    # A search tree, not a flat class: about log2(runs) levels of three brackets each.
    depth = deepest = 0
    for character in jvm_unassigned_pattern():
        depth += {"[": 1, "]": -1}.get(character, 0)
        deepest = max(deepest, depth)
    assert 10 <= deepest <= 30


def test_split_tokens_cuts_the_joined_form_after_each_terminator_and_passes_lists_through():
    import pyarrow as pa

    from nbknn.inputs.tokenizer import split_tokens

    rows = [["naïve", "café"], None, [], ["x²y", "𝐛𝐨𝐥𝐝", "naïve"], ["a"]]
    joined = pa.array([None if r is None else "".join(f"{t} " for t in r) or None for r in rows])
    expected_values = [f"{t} ".encode() for r in rows if r for t in r]
    expected_lengths = [len(r or []) for r in rows]
    for form in (joined, joined.cast(pa.large_string()), joined.cast(pa.binary()), joined.cast(pa.large_binary()),
                 pa.chunked_array([joined[:2], joined[2:]])):
        values, lengths, with_terminator = split_tokens(form)
        assert with_terminator and values.to_pylist() == expected_values, form.type
        assert lengths.tolist() == expected_lengths
        # A slice starts its offsets past the first row's bytes.
        values, lengths, _ = split_tokens(form[3:])
        assert values.to_pylist() == expected_values[2:] and lengths.tolist() == expected_lengths[3:]
    # A null row that still spans bytes, which Arrow allows: none of them is a token.
    spanning = pa.Array.from_buffers(pa.binary(), 2, [pa.py_buffer(bytes([0b10])), *pa.array([b"ab ", b"cd "]).buffers()[1:]])
    assert spanning.to_pylist() == [None, b"cd "]
    values, lengths, _ = split_tokens(spanning)
    assert values.to_pylist() == [b"cd "] and lengths.tolist() == [0, 1]
    assert split_tokens(pa.array([None, None], pa.binary())).values.to_pylist() == []
    # A row whose last token lacks the terminator would run into the next row's tokens.
    with pytest.raises(ValueError, match="end with"):
        split_tokens(pa.array(["a b", "c "]))
    lists = pa.array([["a b"], [], None], pa.list_(pa.string()))
    values, lengths, with_terminator = split_tokens(lists)
    assert values.to_pylist() == ["a b"] and lengths.tolist() == [1, 0, 0] and not with_terminator
