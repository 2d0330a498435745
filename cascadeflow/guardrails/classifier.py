"""A small linear classifier for prompt injection that ships inside the wheel.

Features are lower-cased words and word pairs (CJK text: pairs of characters); a window of
`WINDOW` words slides over the text (half a window at a time) and each window is scored
`sigmoid(bias + sum(weights) / sqrt(features))`: the text's score is its worst window's, so an
instruction hidden in the middle of a long retrieved document is not diluted by the rest. The
weights (`injection_model.json.gz`, built by `tools/injection/train.py`) are words and pairs
with a weight; looking them up is a dict read each, in pure Python, with no download.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import accumulate, repeat
from operator import add

WINDOW = 48
STRIDE = WINDOW // 2
MODEL_FILE = "injection_model.json.gz"
# punctuation separates words; apostrophes and hyphens inside words are kept as they are written
_SEPARATORS = str.maketrans({c: " " for c in "!\"#$%&()*+,./:;<=>?@[\\]^_`{|}~\u3001\u3002\uff0c\uff01\uff1f\uff1a"})


def _is_cjk(char: str) -> bool:
    return "\u2e80" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af" or "\uf900" <= char <= "\ufaff"


def words(text: str) -> list[str]:
    """The text's words, lower-cased; a run of CJK characters becomes its character pairs
    (those scripts do not separate words with spaces)."""
    out = text.lower().translate(_SEPARATORS).split()
    if text.isascii():
        return out
    split: list[str] = []
    for word in out:
        if any(map(_is_cjk, word)):
            split.extend(word[i:i + 2] for i in range(max(len(word) - 1, 1)))
        else:
            split.append(word)
    return split


def features(tokens: list[str]) -> list[str]:
    """Words and adjacent pairs (`"ignore previous"`), the features the weights are keyed by."""
    return tokens + list(map(add, tokens, map(" ".__add__, tokens[1:])))


def windows(count: int) -> list[tuple[int, int]]:
    """(start, end) word ranges scored for a text of `count` words."""
    if count <= WINDOW:
        return [(0, count)]
    starts = list(range(0, count - WINDOW, STRIDE)) + [count - WINDOW]
    return [(s, s + WINDOW) for s in starts]


@dataclass(frozen=True)
class Model:
    bias: float
    weights: dict[str, float]

    def score(self, text: str) -> float:
        """Probability-like 0..1 score of the text's most injection-like window."""
        tokens = words(text)
        if not tokens:
            return 0.0
        get = self.weights.get
        unigram = list(map(get, tokens, repeat(0.0)))
        pair = list(map(get, map(add, tokens, map(" ".__add__, tokens[1:])), repeat(0.0)))
        pair.append(0.0)  # the pair after the last word: none
        total = [0.0, *accumulate(map(add, unigram, pair))]
        best = -math.inf
        for start, end in windows(len(tokens)):
            # a window's pairs are those that start inside it, but not the one leaving it
            value = total[end] - total[start] - pair[end - 1]
            best = max(best, value / math.sqrt(2 * (end - start) - 1))
        z = self.bias + best
        return 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0


@cache
def model() -> Model:
    """The shipped model, read once (a few milliseconds) on first use."""
    raw = resources.files("cascadeflow.guardrails").joinpath(MODEL_FILE).read_bytes()
    data = json.loads(gzip.decompress(raw))
    return Model(float(data["bias"]), {str(k): float(v) for k, v in data["weights"].items()})
