#!/usr/bin/env bash
# Augmentation throughput, flow vs batchgenerators, same shapes, same machine, one run.
# Usage: stages/patches/bench/run.sh [PYTHON]   (PYTHON: an interpreter with batchgenerators 0.25)
# Writes the merged table to stdout; raw lines go to $OUT_DIR (default /tmp/flow-patches-bench).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
py="${1:-${BENCH_PYTHON:-python3}}"
out="${OUT_DIR:-/tmp/flow-patches-bench}"
mkdir -p "$out"
configs=(64 96 10 5 128 192 3 3)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo bench -q -p flow-patches --bench augment --no-run)
bin="$(cd "$root" && cargo bench -q -p flow-patches --bench augment --no-run --message-format=json 2>/dev/null \
  | "$py" -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="augment": print(m["executable"])' | tail -1)"
for t in 1 2; do RAYON_NUM_THREADS=$t "$bin" "${configs[@]}" > "$out/flow-$t.tsv"; done
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$py" "$here/bg_augment.py" "${configs[@]}" > "$out/bg.tsv"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$py" "$here/bg_augment.py" --nnunet-orders 64 96 4 3 128 192 2 3 > "$out/bg-nnunet.tsv"
"$py" - "$out" <<'PY'
import sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = {}
for f in ["flow-1.tsv", "flow-2.tsv", "bg.tsv", "bg-nnunet.tsv"]:
    for line in (out / f).read_text().splitlines()[1:]:
        impl, mode, patch, source, threads, rate, cpu = line.split("\t")
        rows[(mode, int(patch), f)] = (float(rate), float(cpu))
modes = ["recipe", "all", "none", "spatial", "noise", "blur", "contrast", "low_res", "gamma", "mirror"]
fmt = lambda v: "-" if v is None else f"{v:.2f}"
print("Patches per CPU-second (per wall-second in brackets).")
print()
print("| patch (source) | mode | flow, 1 thread | flow, 2 threads | batchgenerators, matched orders | flow/bg (CPU time, 1 thread) | bg, nnU-Net orders |")
print("|---|---|---|---|---|---|---|")
for patch, source in [(64, 96), (128, 192)]:
    for m in modes:
        cell = lambda f: (lambda r: "-" if r is None else f"{r[1]:.2f} ({r[0]:.2f})")(rows.get((m, patch, f)))
        f1, bg = rows.get((m, patch, "flow-1.tsv")), rows.get((m, patch, "bg.tsv"))
        ratio = "-" if not (f1 and bg) else f"{f1[1] / bg[1]:.1f}x"
        print(f"| {patch}^3 ({source}^3) | {m} | {cell('flow-1.tsv')} | {cell('flow-2.tsv')} | {cell('bg.tsv')} | {ratio} | {cell('bg-nnunet.tsv')} |")
PY
