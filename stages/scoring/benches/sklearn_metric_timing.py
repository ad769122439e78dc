"""Times the reference metric on the files written by `examples/bench.rs`: scikit-learn's
weighted log_loss per study, averaged (the oracle of the tests), and a vectorised numpy version
(the fastest plain-Python way). Prints "sklearn_seconds value numpy_seconds value", medians
over REPEATS runs, imports excluded; both include reading the CSV files.

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


def metric_numpy(labels_path, pred_path):
    with open(labels_path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(pred_path, newline="") as f:
        pred = {r["row_id"]: float(r["fractured"]) for r in csv.DictReader(f)}
    y = np.array([[int(r[l]) for l in LABELS] for r in rows], dtype=float)
    p = np.clip(
        np.array([[pred[f'{r["StudyInstanceUID"]}_{l}'] for l in LABELS] for r in rows]),
        1e-15,
        1 - 1e-15,
    )
    w = np.where(y == 1, 2.0, 1.0)
    w[:, 0] *= 7.0
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.mean((w * bce).sum(axis=1) / w.sum(axis=1)))


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn(sys.argv[1], sys.argv[2])
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


if __name__ == "__main__":
    repeats = int(sys.argv[3])
    t_sk, v_sk = timed(metric, repeats)
    t_np, v_np = timed(metric_numpy, repeats)
    print(f"{t_sk} {v_sk} {t_np} {v_np}")
