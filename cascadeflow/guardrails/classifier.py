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
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from itertools import repeat
from operator import add, itemgetter, sub

WINDOW = 48
STRIDE = WINDOW // 2
# a short text is scored as if padded to 8 words with neutral ones: two words ("and now?") say
# too little to be judged on their own
MIN_FEATURES = 15
# a word adds to its window's suspicion only its first `REPEATS` times there (its later
# occurrences, and the pairs they start, count only where they lower the score): the weights are
# learned from prose, where a word seldom comes back more than a few times in 48, so a linear sum
# over "test test test ..." or a pasted log line repeated would read a mildly suspect word
# (`test`, `word`) dozens of times over and block an ordinary user
REPEATS = 3
MODEL_FILE = "injection_model.json.gz"
# punctuation separates words; apostrophes and hyphens inside words are kept as they are written,
# and so are + / = (an encoded payload stays one word: the injection detector splits text once,
# with this table, for its phrases, this model and its decoders)
_PUNCTUATION = "!\"#$%&()*,.:;<>?@[\\]^_`{|}~\u3001\u3002\uff0c\uff01\uff1f\uff1a"
SEPARATORS = str.maketrans({c: " " for c in _PUNCTUATION})
# the same for ASCII text, as bytes: `bytes.translate` reads a table where `str.translate`
# asks a dict for each character (a 4 KB text: 20 us less, before the split)
_ASCII_SEPARATORS = bytes(0x20 if chr(b) in _PUNCTUATION else b for b in range(256))


def _is_cjk(char: str) -> bool:
    return "\u2e80" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af" or "\uf900" <= char <= "\ufaff"


def words(text: str) -> list[str]:
    """The text's words, lower-cased; a run of CJK characters becomes its character pairs
    (those scripts do not separate words with spaces)."""
    return split_cjk(split(text.lower()), text.isascii())


def split(text: str) -> list[str]:
    """`text` split at whitespace and at `SEPARATORS`' punctuation."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_SEPARATORS).decode("ascii").split()
    return text.translate(SEPARATORS).split()


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
    already hashed, cheaper to build and look up than a joined string.

    `starts` is the pairs' weights arranged for scoring (built once, at load): each pair's weight
    plus that of its first word, so a position's weight (its word and the pair it starts) is one
    lookup of the pair, with the word's weight as the default when the pair has none."""

    bias: float
    words: dict[str, float]
    pairs: dict[tuple[str, str], float]
    starts: dict[tuple[str, str], float] = field(init=False, repr=False, compare=False)
    # the words whose weight, or that of a pair they start, is above zero
    raising: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        word = self.words.get
        object.__setattr__(self, "starts", {k: word(k[0], 0.0) + v for k, v in self.pairs.items()})
        object.__setattr__(self, "raising", frozenset(
            [w for w, v in self.words.items() if v > 0] + [a for (a, _b), v in self.pairs.items() if v > 0]))

    @property
    def weights(self) -> dict[str | tuple[str, ...], float]:
        """Every feature's weight, words and pairs, as the weights file lists them (a new dict
        on each read: for inspection, scoring reads `words` and `starts`)."""
        out: dict[str | tuple[str, ...], float] = dict(self.words.items())
        out.update(self.pairs.items())
        return out

    def score(self, text: str) -> float:
        """Probability-like 0..1 score of the text's most injection-like window."""
        return self.score_words(words(text))

    def positions(self, tokens: list[str], distinct: set[str] | None = None) -> list[float]:
        """Each word's weight plus that of the pair it starts (the last word starts none): one
        C-level pass, the word weights feeding the pair lookups as their defaults (`zip` reuses
        its tuple, so a pair costs no allocation). `distinct`, the set of `tokens` when the
        caller has it: each distinct word is looked up once in the model, then every word in
        that small dict by one `itemgetter` call (a 4 KB text: 5% fewer instructions)."""
        word = self.words.get
        weights: Iterable[float]
        if distinct is None or len(tokens) < 2:
            weights, last = map(word, tokens, repeat(0.0)), word(tokens[-1], 0.0)
        else:
            known = dict(zip(distinct, map(word, distinct, repeat(0.0)), strict=False))
            found: tuple[float, ...] = itemgetter(*tokens)(known)
            weights, last = found, found[-1]
        pairs = zip(tokens, tokens[1:], strict=False)  # noqa: RUF007 - pairwise builds a tuple a pair
        out = list(map(self.starts.get, pairs, weights))
        out.append(last)
        return out

    def score_words(self, tokens: list[str], distinct: set[str] | None = None) -> float:
        """`score` of a text already split by `words` (`distinct`: the set of `tokens`, when the
        caller has it; see `positions`)."""
        if not tokens:
            return 0.0
        both = self.positions(tokens, distinct)
        if len(tokens) <= WINDOW:
            total = sum(both)
            best = (total - self.lost(tokens, both, 0, len(tokens))) / math.sqrt(max(2 * len(tokens) - 1,
                                                                                  MIN_FEATURES))
        else:
            # `lost` only lowers a window's sum: windows are read from the highest sum down, until
            # one's sum is no higher than the best found (most text: the first one or two)
            sums = self.window_sums(tokens, both)
            starts = windows(len(tokens))
            best = -math.inf
            for index in sorted(range(len(sums)), key=sums.__getitem__, reverse=True):
                if sums[index] <= best:
                    break
                start, end = starts[index]
                best = max(best, sums[index] - self.lost(tokens, both, start, end))
            best /= math.sqrt(2 * WINDOW - 1)
        z = self.bias + best
        return 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0

    def lost(self, tokens: list[str], both: list[float], start: int, end: int) -> float:
        """What the window `tokens[start:end]` loses to `REPEATS`: the positive weight of each
        occurrence of a word that has `REPEATS` earlier ones in the window (its word and the pair
        it starts; the window's last word starts no pair of it). Zero, after one count of the
        window's words in C, where no word there comes back more than `REPEATS` times."""
        lost = 0.0
        raising = self.raising
        for word, n in Counter(tokens[start:end]).items():
            if n <= REPEATS or word not in raising:
                continue
            at = start - 1
            for seen in range(n):
                at = tokens.index(word, at + 1, end)
                if seen >= REPEATS:
                    weight = self.words.get(word, 0.0) if at == end - 1 else both[at]
                    if weight > 0:
                        lost += weight
        return lost

    def window_sums(self, tokens: list[str], both: list[float]) -> list[float]:
        """The feature weight of each window of `windows(len(tokens))`, in C-level passes.
        Windows start every `STRIDE` words, so each but the last is two half-window blocks,
        each block summed once; a window's pairs are those that start inside it, but not the
        one leaving it (the pair its last word starts)."""
        count = len(tokens)
        aligned = len(range(0, count - WINDOW, STRIDE))  # the windows that start on a block
        # the blocks of `STRIDE` positions from the start (`zip` of one iterator, taken
        # `STRIDE` at a time: a third fewer instructions than a slice each); those past the
        # last aligned window's are left unused by the `map`s below
        blocks = list(map(sum, zip(*(iter(both),) * STRIDE, strict=False)))
        last_words = slice(WINDOW - 1, WINDOW - 1 + STRIDE * aligned, STRIDE)
        leaving = map(sub, both[last_words], map(self.words.get, tokens[last_words], repeat(0.0)))
        out = list(map(sub, map(add, blocks, blocks[1:]), leaving))
        out.append(sum(both[count - WINDOW:]))  # the last window ends the text: no pair leaves it
        return out


@cache
def model() -> Model:
    """The shipped model, read once (about a tenth of a second) on first use."""
    raw = resources.files("cascadeflow.guardrails").joinpath(MODEL_FILE).read_bytes()
    data = json.loads(gzip.decompress(raw))
    words: dict[str, float] = {}
    pairs: dict[tuple[str, str], float] = {}
    for key, value in data["weights"].items():
        first, space, second = key.partition(" ")
        if space:
            pairs[first, second] = float(value)
        else:
            words[key] = float(value)
    return Model(float(data["bias"]), words, pairs)
