"""Times the reference metric (scikit-learn weighted log_loss per study, averaged) on the files
written by `examples/bench.rs`; prints the median seconds over REPEATS runs (import excluded).

usage: sklearn_metric_timing.py LABELS_CSV PRED_CSV REPEATS
"""
import csv
import statistics
import sys
import time

import numpy as np
from sklearn.metrics import log_loss

LABELS = ["patient_overall"] + [f"C{i}" for i in range(1, 8)]


def metric(labels_path, pred_path):
    with open(labels_path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(pred_path, newline="") as f:
        pred = {r["row_id"]: float(r["fractured"]) for r in csv.DictReader(f)}
    losses = []
    for r in rows:
        y = np.array([int(r[l]) for l in LABELS])
        p = np.clip([pred[f'{r["StudyInstanceUID"]}_{l}'] for l in LABELS], 1e-15, 1 - 1e-15)
        w = np.where(y == 1, 2.0, 1.0)
        w[0] *= 7.0
        losses.append(log_loss(y, p, sample_weight=w, labels=[0, 1]))
    return float(np.mean(losses))


if __name__ == "__main__":
    times = []
    for _ in range(int(sys.argv[3])):
        t0 = time.perf_counter()
        value = metric(sys.argv[1], sys.argv[2])
        times.append(time.perf_counter() - t0)
    print(f"{statistics.median(times)} {value}")
