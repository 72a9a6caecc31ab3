"""The one tokeniser of the project: training and prediction both tokenise through it.

Spark runs it in the JVM (``lower`` + ``regexp_extract_all``, no Python UDF); ``tokenize`` is the
Python reference of the same definition, used to feed scikit-learn in the equivalence tests.

The pattern language is the common subset of Java's ``java.util.regex`` and Python's ``regex``
module. The default spells its character classes with Unicode properties (``\\p{L}`` letters,
``\\p{M}`` combining marks, ``\\p{N}`` numbers) because ``\\w`` differs between the two engines:
Java's ``\\w`` is ASCII-only unless ``(?U)`` is given, and even then it disagrees with Python's
``\\w`` on combining marks and numeric symbols such as the superscript two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import regex

from nbknn.common.errors import ConfigError
from nbknn.contract import DEFAULT_TOKEN_PATTERN, token_pattern_problem


@dataclass(frozen=True)
class TokenizerConfig:
    """What defines a tokenisation; recorded in the model manifest so prediction reuses it."""

    pattern: str = DEFAULT_TOKEN_PATTERN
    lowercase: bool = True

    def __post_init__(self) -> None:
        validate_pattern(self.pattern)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TokenizerConfig":
        return cls(pattern=data["pattern"], lowercase=bool(data["lowercase"]))


def validate_pattern(pattern: str) -> None:
    """Refuse an empty pattern, one that does not compile, or one that can match the empty string."""
    problem = token_pattern_problem(pattern)
    if problem:
        raise ConfigError(problem)


def tokenize(text: str, config: TokenizerConfig = TokenizerConfig()) -> list[str]:
    """Python reference: the tokens of ``text`` in order of appearance."""
    if config.lowercase:
        text = text.lower()
    # finditer + group(0), not findall: findall returns capture groups when the pattern has any,
    # while Spark's regexp_extract_all(..., 0) returns whole matches.
    return [match.group(0) for match in regex.finditer(config.pattern, text)]


def tokens_column(text_col, config: TokenizerConfig):
    """Spark Column of ``array<string>``: the tokens of ``text_col``, computed in the JVM."""
    from pyspark.sql import functions as F

    source = F.lower(text_col) if config.lowercase else text_col
    # Column arguments (not a SQL string) so that backslashes reach Java's regex unescaped.
    return F.regexp_extract_all(source, F.lit(config.pattern), F.lit(0))
