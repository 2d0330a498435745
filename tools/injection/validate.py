"""Validation on collections held out whole: the way to pick hyperparameters without the evaluation.

    PYTHONPATH=. /tmp/trainvenv/bin/python tools/injection/validate.py /tmp/pkgs/train

Each fold trains on every source but the public collections it holds out, then scores those
(attack recall per collection, false positives per benign source) at the documented threshold
0.7, with the weights pruned to KEEP as the shipped file is. Written texts are always trained on:
what is measured is how far they and the other collections carry to a collection never seen.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path

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


def main(folder: Path) -> None:
    rows = train.load_rows(folder)
    recall: dict[str, list[int]] = defaultdict(list)
    fp: dict[str, list[int]] = defaultdict(list)
    attack_z, benign_z = [], []
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
        for score, (label, family, _text) in zip(best, held, strict=True):
            hit = int(score >= THRESHOLD)
            if label:
                recall[family.split("_")[0]].append(hit)
                attack_z.append(score)
            else:
                fp[family.split("_")[0]].append(hit)
                benign_z.append(score)
    for name, hits in sorted(recall.items()):
        print(f"held-out attacks {name:15s} recall {np.mean(hits):.3f} ({sum(hits)}/{len(hits)})")
    for name, hits in sorted(fp.items()):
        print(f"held-out benign  {name:15s} false positives {sum(hits)}/{len(hits)} ({np.mean(hits):.4f})")
    a, b = np.array(attack_z), np.array(benign_z)
    macro = np.mean([np.mean(h) for h in recall.values()])
    print(f"at 0.7: recall {np.mean(a >= THRESHOLD):.3f} (macro {macro:.3f}), "
          f"fpr {np.mean(b >= THRESHOLD):.4f}")
    for rate in (0.003, 0.005, 0.01):
        cut = np.sort(b)[::-1][int(len(b) * rate)]
        print(f"at benign fpr {rate}: recall {np.mean(a > cut):.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
