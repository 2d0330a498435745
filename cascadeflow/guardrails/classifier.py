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
from itertools import accumulate, pairwise, repeat
from operator import add, sub

WINDOW = 48
STRIDE = WINDOW // 2
# a short text is scored as if padded to 8 words with neutral ones: two words ("and now?") say
# too little to be judged on their own
MIN_FEATURES = 15
MODEL_FILE = "injection_model.json.gz"
# punctuation separates words; apostrophes and hyphens inside words are kept as they are written,
# and so are + / = (an encoded payload stays one word: the injection detector splits text once,
# with this table, for its phrases, this model and its decoders)
_PUNCTUATION = "!\"#$%&()*,.:;<>?@[\\]^_`{|}~\u3001\u3002\uff0c\uff01\uff1f\uff1a"
SEPARATORS = str.maketrans({c: " " for c in _PUNCTUATION})


def _is_cjk(char: str) -> bool:
    return "\u2e80" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af" or "\uf900" <= char <= "\ufaff"


def words(text: str) -> list[str]:
    """The text's words, lower-cased; a run of CJK characters becomes its character pairs
    (those scripts do not separate words with spaces)."""
    return split_cjk(text.lower().translate(SEPARATORS).split(), text.isascii())


def split_cjk(out: list[str], ascii_only: bool) -> list[str]:
    """`out` with each run of CJK characters replaced by its character pairs."""
    if ascii_only:
        return out
    split: list[str] = []
    for word in out:
        if any(map(_is_cjk, word)):
            split.extend(word[i:i + 2] for i in range(max(len(word) - 1, 1)))
        else:
            split.append(word)
    return split


def features(tokens: list[str]) -> list[str]:
    """Words and adjacent pairs (`"ignore previous"`), as the weights file names them."""
    return tokens + list(map(add, tokens, map(" ".__add__, tokens[1:])))


def windows(count: int) -> list[tuple[int, int]]:
    """(start, end) word ranges scored for a text of `count` words."""
    if count <= WINDOW:
        return [(0, count)]
    starts = [*range(0, count - WINDOW, STRIDE), count - WINDOW]
    return [(s, s + WINDOW) for s in starts]


@dataclass(frozen=True)
class Model:
    """Weights keyed by word, and by (word, word) for pairs: a pair's key is a tuple of strings
    already hashed, cheaper to build and look up than a joined string."""

    bias: float
    weights: dict[str | tuple[str, ...], float]

    def score(self, text: str) -> float:
        """Probability-like 0..1 score of the text's most injection-like window."""
        return self.score_words(words(text))

    def score_words(self, tokens: list[str]) -> float:
        """`score` of a text already split by `words`."""
        if not tokens:
            return 0.0
        get = self.weights.get
        # each word's weight plus that of the pair it starts (the last word starts none)
        both = list(map(add, map(get, tokens, repeat(0.0)), map(get, pairwise(tokens), repeat(0.0))))
        both.append(get(tokens[-1], 0.0))
        total = [0.0, *accumulate(both)]
        if len(tokens) <= WINDOW:
            best = total[-1] / math.sqrt(max(2 * len(tokens) - 1, MIN_FEATURES))
        else:
            # a window's pairs are those that start inside it, but not the one leaving it
            ends = [e for _s, e in windows(len(tokens))]
            sums = map(sub, (total[e] for e in ends), (total[e - WINDOW] for e in ends))
            leaving = (both[e - 1] - get(tokens[e - 1], 0.0) for e in ends)
            best = max(map(sub, sums, leaving)) / math.sqrt(2 * WINDOW - 1)
        z = self.bias + best
        return 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0


@cache
def model() -> Model:
    """The shipped model, read once (a few milliseconds) on first use."""
    raw = resources.files("cascadeflow.guardrails").joinpath(MODEL_FILE).read_bytes()
    data = json.loads(gzip.decompress(raw))
    weights: dict[str | tuple[str, ...], float] = {}
    for key, value in data["weights"].items():
        parts = key.split(" ")
        weights[parts[0] if len(parts) == 1 else tuple(parts)] = float(value)
    return Model(float(data["bias"]), weights)
