#!/usr/bin/env bash
# Engine overhead: 1,000 trivial command nodes (fan-out of 999 + one gather), run by flow and
# by Snakemake on the same machine in the same script. Prints a table of medians.
#
#   bench/engine_overhead.sh [REPEATS]     (needs a release build: cargo build --release)
#
# Snakemake comes from PyPI into bench/.venv-snakemake (created on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
N=999
FLOW=${FLOW:-$PWD/target/release/flow}
[ -x "$FLOW" ] || { echo "build first: cargo build --release" >&2; exit 2; }
VENV=$PWD/bench/.venv-snakemake
if [ ! -x $VENV/bin/snakemake ]; then
  python3 -m venv $VENV && $VENV/bin/pip install --quiet snakemake
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# flow pipeline: one foreach node expanded 999 times plus a gather node.
cat > "$WORK/fan.yaml" <<YAML
name: fan
params: {n: $N}
nodes:
  leaf_\${i}:
    foreach: {i: "0..\${params.n}"}
    stage: command
    params: {cmd: ["sh", "-c", "echo \${args.i} > \${outputs.o}"], args: {i: "\${i}"}, outputs: {o: o.txt}}
  gather:
    stage: command
    inputs:
      parts: {foreach: {i: "0..\${params.n}"}, each: "leaf_\${i}.o"}
    params: {cmd: ["sh", "-c", "cat \${inputs.parts} | wc -l > \${outputs.count}"], outputs: {count: count.txt}}
YAML

cat > "$WORK/Snakefile" <<SNAKE
rule gather:
    input: expand("leaf/{i}.txt", i=range($N))
    output: "count.txt"
    shell: "cat {input} | wc -l > {output}"
rule leaf:
    output: "leaf/{i}.txt"
    shell: "echo {wildcards.i} > {output}"
SNAKE

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }

# Every repetition gets fresh folders and nothing is deleted until the end: removing the
# previous repetition's few thousand files (ext4 with discard) slowed the next run by up to 2x.
declare -a FF FN SF SN
for r in $(seq "$REPEATS"); do
  f="$WORK/f$r" s="$WORK/s$r"
  mkdir -p "$f" "$s"; cp "$WORK/Snakefile" "$s/"
  sync
  FF+=($(cd "$f" && t "$FLOW" --quiet run "$WORK/fan.yaml" --jobs 2 --no-publish))
  FN+=($(cd "$f" && t "$FLOW" --quiet run "$WORK/fan.yaml" --jobs 2 --no-publish))
  sync
  SF+=($(cd "$s" && t $VENV/bin/snakemake --cores 2 --quiet all -- gather))
  SN+=($(cd "$s" && t $VENV/bin/snakemake --cores 2 --quiet all -- gather))
  [ "$(cat "$s/count.txt")" = "$N" ] || { echo "snakemake result wrong" >&2; exit 1; }
done
ff=$(printf '%s\n' "${FF[@]}" | median); fn=$(printf '%s\n' "${FN[@]}" | median)
sf=$(printf '%s\n' "${SF[@]}" | median); sn=$(printf '%s\n' "${SN[@]}" | median)
echo "| case (1,000 nodes, --jobs/--cores 2) | flow (s) | Snakemake (s) | Snakemake / flow |"
echo "|---|---|---|---|"
printf "| full run | %.3f | %.3f | %.1fx |\n" "$ff" "$sf" "$(echo "$sf / $ff" | bc -l)"
printf "| no-op rerun | %.3f | %.3f | %.1fx |\n" "$fn" "$sn" "$(echo "$sn / $fn" | bc -l)"
echo "(median of $REPEATS; flow $(git rev-parse --short HEAD), $(nproc) cores)"
