"""Independent reference for the stage-3 quantile score with numpy:
clip(np.quantile(p[p >= alpha], beta), min, max), or min when nothing qualifies.

usage: quantile_oracle.py CASES_JSON -> JSON list of scores on stdout
CASES_JSON: [{"probs": [...], "alpha": a, "beta": b, "min": lo, "max": hi}, ...]
"""
import json
import sys

import numpy as np


def score(case):
    p = np.asarray(case["probs"], dtype=np.float64)
    q = p[p >= case["alpha"]]
    if q.size == 0:
        return case["min"]
    return float(np.clip(np.quantile(q, case["beta"]), case["min"], case["max"]))


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    json.dump([score(c) for c in cases], sys.stdout)
