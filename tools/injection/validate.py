"""Validation on collections held out whole: the way to pick hyperparameters without the evaluation.

    PYTHONPATH=. /tmp/trainvenv/bin/python tools/injection/validate.py /tmp/pkgs/train

Each fold trains on every source but the public collections it holds out, then scores those
(attack recall per collection, false positives per benign source) at the documented threshold
0.7, with the weights pruned to KEEP and rounded as the shipped file is. Written texts are always
trained on: what is measured is how far they and the other collections carry to a collection
never seen.

Two scores are measured: the classifier alone, and the whole detector users run
(`cascadeflow.guardrails.injection`: phrases, delimiters, encodings and the classifier, combined
by noisy-or) with each fold's weights in place of the shipped ones. For the whole detector each
held-out text gets the smallest shift of the classifier's bias at which it is flagged at 0.7, so
recall and false positives are known for every shift; the shift printed last (the largest whose
held-out benign false-positive rate stays within TARGET_FPR) is the one train.py's BIAS_SHIFT
writes into the shipped file.
"""

from __future__ import annotations

import math
import sys
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import train

# (attack collections, benign sources) held out together; a source is the family's first part
FOLDS = [
    ({"bastion", "hermes", "langkit"}, {"llm", "django"}),
    ({"promptshields", "ps"}, {"stdlib", "chatterbot"}),
    ({"aib", "mini"}, {"library"}),
]
THRESHOLD = math.log(0.7 / 0.3)
# held-out benign texts the whole detector may flag at the chosen shift: half of issue 15's 1%,
# leaving room for text unlike any collection held out here
TARGET_FPR = 0.005
SHIFT_RANGE = 6.0  # shifts searched: -6..6 around each fold's fitted bias


def detector() -> Any:
    """cascadeflow's injection module, loaded from its files without running cascadeflow's
    package __init__ (which needs the runtime's dependencies, not installed in the training venv)."""
    root = Path(__file__).parents[2] / "cascadeflow"
    for name, path in (("cascadeflow", root), ("cascadeflow.guardrails", root / "guardrails")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    import cascadeflow.guardrails.injection as injection
    return injection


def fold_model(injection: Any, vocab: dict[str, int], coef: np.ndarray, bias: float) -> Any:
    """A `classifier.Model` with the fold's weights (the pruned, rounded ones), as train.write keeps them."""
    words: dict[str, float] = {}
    pairs: dict[tuple[str, str], float] = {}
    for feature, col in vocab.items():
        if coef[col] != 0:
            first, space, second = feature.partition(" ")
            if space:
                pairs[first, second] = float(coef[col])
            else:
                words[feature] = float(coef[col])
    return injection.classifier.Model(bias, words, pairs)


def critical_shift(injection: Any, model: Any, bias: float, text: str) -> float:
    """The smallest shift of `bias` at which the whole detector flags `text` at 0.7 (bisection;
    -SHIFT_RANGE: flagged whatever the classifier says; inf: not even at +SHIFT_RANGE)."""
    scan = injection.InjectionDetector()

    def flagged(shift: float) -> bool:
        object.__setattr__(model, "bias", bias + shift)
        return bool(scan.score(text)[0] >= 0.7)

    lo, hi = -SHIFT_RANGE, SHIFT_RANGE
    if flagged(lo):
        return lo
    if not flagged(hi):
        return math.inf
    while hi - lo > 0.005:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if flagged(mid) else (mid, hi)
    return hi


def main(folder: Path) -> None:
    rows = train.load_rows(folder)
    injection = detector()
    recall: dict[str, list[int]] = defaultdict(list)
    fp: dict[str, list[int]] = defaultdict(list)
    attack_z, benign_z = [], []
    crit: dict[int, list[tuple[str, float]]] = {0: [], 1: []}  # label -> (source, critical shift)
    for attacks, benign in FOLDS:
        held = [r for r in rows if r[1].split("_")[0] in (attacks if r[0] else benign)]
        rest = [r for r in rows if r[1].split("_")[0] not in (attacks if r[0] else benign)]
        vocab: dict[str, int] = {}
        x, y, _ = train.matrix(rest, vocab, grow=True)
        clf = train.model(x, y)
        coef = clf.coef_[0].copy()
        coef[np.argsort(-np.abs(coef))[train.KEEP:]] = 0
        coef = np.round(coef, 3)
        xv, _y, owner = train.matrix(held, vocab, grow=False)
        z = xv @ coef + clf.intercept_[0]
        best = np.full(len(held), -np.inf)
        np.maximum.at(best, owner, z)
        model = fold_model(injection, vocab, coef, float(clf.intercept_[0]))
        injection.classifier.model = lambda model=model: model
        for score, (label, family, text) in zip(best, held, strict=True):
            hit = int(score >= THRESHOLD)
            source = family.split("_")[0]
            (recall if label else fp)[source].append(hit)
            (attack_z if label else benign_z).append(score)
            crit[label].append((source, critical_shift(injection, model, float(clf.intercept_[0]), text)))
    print("classifier alone, fitted bias:")
    for name, hits in sorted(recall.items()):
        print(f"  held-out attacks {name:15s} recall {np.mean(hits):.3f} ({sum(hits)}/{len(hits)})")
    for name, hits in sorted(fp.items()):
        print(f"  held-out benign  {name:15s} false positives {sum(hits)}/{len(hits)} ({np.mean(hits):.4f})")
    a, b = np.array(attack_z), np.array(benign_z)
    macro = np.mean([np.mean(h) for h in recall.values()])
    print(f"  at 0.7: recall {np.mean(a >= THRESHOLD):.3f} (macro {macro:.3f}), "
          f"fpr {np.mean(b >= THRESHOLD):.4f}")
    for rate in (0.003, 0.005, 0.01):
        cut = np.sort(b)[::-1][int(len(b) * rate)]
        print(f"  at benign fpr {rate}: recall {np.mean(a > cut):.3f}")
    whole(crit)


def whole(crit: dict[int, list[tuple[str, float]]]) -> None:
    """The whole detector's held-out recall and false positives at 0.7 for a range of bias shifts,
    and the shift chosen for TARGET_FPR."""
    attacks = np.array([s for _, s in crit[1]])
    benign = np.array([s for _, s in crit[0]])
    ordered = np.sort(benign)
    allowed = int(len(benign) * TARGET_FPR)
    # flagged when critical <= shift: the largest shift (2 decimals) flagging at most `allowed`
    chosen = math.floor((ordered[allowed] - 1e-9) * 100) / 100
    print("whole detector (phrases, encodings, classifier), at 0.7:")
    for shift in sorted({-0.5, -0.25, -0.164, 0.0, 0.25, 0.5, 0.75, 1.0, chosen}):
        print(f"  bias shift {shift:+.3f}: recall {np.mean(attacks <= shift):.3f}, "
              f"fpr {np.mean(benign <= shift):.4f} ({int(np.sum(benign <= shift))}/{len(benign)})")
    print(f"  per source at shift {chosen:+.2f}:")
    for label, what in ((1, "recall"), (0, "false positives")):
        for source in sorted({s for s, _ in crit[label]}):
            hits = [c <= chosen for s, c in crit[label] if s == source]
            print(f"    {'attacks' if label else 'benign '} {source:15s} {what} {np.mean(hits):.4f} "
                  f"({sum(hits)}/{len(hits)})")
    print(f"chosen bias shift (held-out benign fpr <= {TARGET_FPR}): {chosen:+.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
