"""Independent reference for flow-scoring: the competition metric via scikit-learn's weighted
log_loss computed per study, and per-label roc_auc_score.

usage: metric_oracle.py LABELS_CSV PRED_CSV [LABELS_CSV PRED_CSV ...]
  -> JSON list on stdout, one object per pair (one interpreter start for many cases)
"""
import csv
import json
import sys

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

LABELS = ["patient_overall"] + [f"C{i}" for i in range(1, 8)]
EPS = 1e-15


def score(labels_path, pred_path):
    with open(labels_path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(pred_path, newline="") as f:
        pred = {r["row_id"]: float(r["fractured"]) for r in csv.DictReader(f)}

    y = np.array([[int(r[l]) for l in LABELS] for r in rows])
    p = np.array([[pred[f'{r["StudyInstanceUID"]}_{l}'] for l in LABELS] for r in rows])

    losses = []
    for yi, pi in zip(y, p):
        w = np.where(yi == 1, 2.0, 1.0)
        w[0] *= 7.0
        # sklearn >= 1.5 clips at float64 eps itself; the competition clips at 1e-15 first.
        losses.append(log_loss(yi, np.clip(pi, EPS, 1 - EPS), sample_weight=w, labels=[0, 1]))
    aucs = {}
    for j, label in enumerate(LABELS):
        aucs[label] = roc_auc_score(y[:, j], p[:, j]) if len(set(y[:, j])) == 2 else None
    yv, pv = y[:, 1:].ravel(), p[:, 1:].ravel()
    pooled = roc_auc_score(yv, pv) if len(set(yv)) == 2 else None
    prior = y.mean(axis=0)
    prior_losses = []
    for yi in y:
        w = np.where(yi == 1, 2.0, 1.0)
        w[0] *= 7.0
        prior_losses.append(
            log_loss(yi, np.clip(prior, EPS, 1 - EPS), sample_weight=w, labels=[0, 1])
        )
    return {
        "metric": float(np.mean(losses)),
        "per_study": [float(v) for v in losses],
        "prior_metric": float(np.mean(prior_losses)),
        "auc": aucs,
        "pooled_vertebra_auc": pooled,
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: metric_oracle.py LABELS_CSV PRED_CSV [LABELS_CSV PRED_CSV ...]")
    json.dump([score(args[i], args[i + 1]) for i in range(0, len(args), 2)], sys.stdout)
