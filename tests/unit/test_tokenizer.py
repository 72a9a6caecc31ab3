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
