#!/usr/bin/env python3
"""Trains the fraud model from the generator's labelled traffic and exports it to ONNX.

    arus fraud features --seed 7 --claims 60000 --out /tmp/train.csv
    arus fraud features --seed 99 --claims 30000 --out /tmp/holdout.csv
    python models/train.py /tmp/train.csv /tmp/holdout.csv --version 1

The features are the fraud job's (`arus_jobs::fraud::FEATURES`, computed by the same code);
a claim is positive when the generator labelled it. Writes `models/fraud-v<version>.onnx`
(input `features`: float32 [n, 12]; output `probabilities`: float32 [n, 2], no zipmap) and
`models/fraud-v<version>.json` (the model card: features, importances, training data,
precision / recall / AUC on the held-out set, per pattern). Deterministic: fixed seeds.
Needs scikit-learn, skl2onnx and onnxruntime (`pip install scikit-learn skl2onnx onnxruntime`).
"""

import argparse
import csv
import json
import pathlib

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    features = header[1:-1]
    x = np.array([[float(v) for v in r[1:-1]] for r in body], dtype=np.float32)
    labels = [r[-1] for r in body]
    y = np.array([1 if label else 0 for label in labels])
    return features, x, y, labels


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("train")
    parser.add_argument("holdout")
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()

    features, x, y, _ = load(args.train)
    hold_features, hx, hy, hlabels = load(args.holdout)
    assert features == hold_features, "the two files have different features"
    model = GradientBoostingClassifier(n_estimators=80, max_depth=3, random_state=7)
    model.fit(x, y)

    onnx = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, len(features)]))],
        options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    for output in onnx.graph.output:
        if output.name == "probabilities":
            break
    else:
        raise SystemExit("the exported model has no `probabilities` output")
    here = pathlib.Path(__file__).parent
    path = here / f"fraud-v{args.version}.onnx"
    path.write_bytes(onnx.SerializeToString())

    scores = model.predict_proba(hx)[:, 1]
    predicted = scores >= args.threshold
    per_pattern = {}
    for pattern in sorted({label for label in hlabels if label}):
        mask = np.array([label == pattern for label in hlabels])
        per_pattern[pattern] = {
            "claims": int(mask.sum()),
            "recall": round(float(predicted[mask].mean()), 4),
        }
    card = {
        "name": "arus-fraud",
        "version": str(args.version),
        "file": path.name,
        "model": "scikit-learn GradientBoostingClassifier(n_estimators=80, max_depth=3, random_state=7)",
        "input": {"name": "features", "type": "float32", "shape": [None, len(features)]},
        "output": {"name": "probabilities", "type": "float32", "shape": [None, 2], "positive_column": 1},
        "features": features,
        "importances": {f: round(float(i), 4) for f, i in zip(features, model.feature_importances_)},
        "threshold": args.threshold,
        "training": {"file": pathlib.Path(args.train).name, "claims": int(len(y)), "fraudulent": int(y.sum())},
        "holdout": {
            "file": pathlib.Path(args.holdout).name,
            "claims": int(len(hy)),
            "fraudulent": int(hy.sum()),
            "precision": round(float(precision_score(hy, predicted, zero_division=0)), 4),
            "recall": round(float(recall_score(hy, predicted)), 4),
            "auc": round(float(roc_auc_score(hy, scores)), 4),
            "recall_per_pattern": per_pattern,
        },
    }
    (here / f"fraud-v{args.version}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["holdout"], indent=2))


if __name__ == "__main__":
    main()
