"""Independent reference for the patient_overall combiner: scikit-learn's weighted, L2-penalised
LogisticRegression on the same standardised features.

usage: logistic_oracle.py DATA_JSON  -> JSON {"intercept": float, "coef": [float]} on stdout
DATA_JSON: {"x": [[...]], "y": [0/1], "weight": [...], "lambda": float}
Objective (ours): sum_i w_i * logloss_i + lambda/2 * ||coef||^2, i.e. sklearn's C = 1/lambda.
"""
import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression


def main(path):
    with open(path) as f:
        data = json.load(f)
    x = np.asarray(data["x"], dtype=float)
    y = np.asarray(data["y"], dtype=int)
    w = np.asarray(data["weight"], dtype=float)
    model = LogisticRegression(C=1.0 / data["lambda"], tol=1e-12, max_iter=100000, solver="lbfgs")
    model.fit(x, y, sample_weight=w)
    json.dump({"intercept": float(model.intercept_[0]), "coef": model.coef_[0].tolist()}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
