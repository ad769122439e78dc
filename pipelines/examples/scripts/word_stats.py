"""Counts words per line of a text file and writes a CSV (a user's own node, no recompiling)."""
import csv
import sys

src, dst, min_len = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(src) as f, open(dst, "w", newline="") as out:
    w = csv.writer(out)
    w.writerow(["line", "words", "long_words"])
    for i, line in enumerate(f, 1):
        words = line.split()
        w.writerow([i, len(words), sum(len(x) >= min_len for x in words)])
