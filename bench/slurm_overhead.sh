#!/usr/bin/env bash
# Slurm overhead: N trivial command nodes (`echo i > out`) as Slurm jobs, flow's slurm
# executor against Snakemake's slurm executor plugin, on the same cluster in the same script:
# wall time of a full run, then of a no-op rerun (everything up to date) in the same folder.
#
#   bench/slurm_overhead.sh [N] [TOOLS]   (default: 100 nodes, "flow snakemake")
#
# Needs a running Slurm (scripts/slurm-local.sh up) and a flow binary (FLOW, default
# target/release/flow, else target/debug/flow). Snakemake and its slurm plugin come from PyPI
# into bench/.venv-snakemake-slurm (created on first use). Both tools may keep at most 100
# jobs queued; Snakemake asks squeue for states (accounting is off on the local cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
TOOLS=${2:-flow snakemake}
FLOW=${FLOW:-$PWD/target/release/flow}
[ -x "$FLOW" ] || FLOW=$PWD/target/debug/flow
[ -x "$FLOW" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v sbatch >/dev/null || { echo "no Slurm: run scripts/slurm-local.sh up" >&2; exit 2; }
VENV=$PWD/bench/.venv-snakemake-slurm
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat > "$WORK/many.yaml" <<YAML
name: many
params: {n: $N}
nodes:
  t\${i}:
    foreach: {i: "0..\${params.n}"}
    stage: command
    params: {cmd: ["sh", "-c", "echo \${args.i} > o"], args: {i: "\${i}"}, outputs: {o: o}}
YAML

cat > "$WORK/Snakefile" <<SNAKE
rule all:
    input: expand("out/{i}.txt", i=range($N))
rule t:
    output: "out/{i}.txt"
    shell: "echo {wildcards.i} > {output}"
SNAKE

secs() { local s e; s=$(date +%s.%N); "$@" >"$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc -l; }

for tool in $TOOLS; do
  case $tool in
    flow)
      mkdir -p "$WORK/f"
      t=$(cd "$WORK/f" && secs "$FLOW" --quiet run "$WORK/many.yaml" --executor slurm --no-publish)
      r=$(cd "$WORK/f" && secs "$FLOW" --quiet run "$WORK/many.yaml" --executor slurm --no-publish)
      ;;
    snakemake)
      if [ ! -x "$VENV/bin/snakemake" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet snakemake snakemake-executor-plugin-slurm
      fi
      mkdir -p "$WORK/s" && cp "$WORK/Snakefile" "$WORK/s/"
      t=$(cd "$WORK/s" && secs "$VENV/bin/snakemake" --executor slurm --jobs 100 \
        --slurm-status-command squeue --slurm-no-account \
        --slurm-init-seconds-before-status-checks 1 --quiet all)
      [ "$(ls "$WORK/s/out" | wc -l)" = "$N" ] || { echo "snakemake made too few files" >&2; exit 1; }
      r=$(cd "$WORK/s" && secs "$VENV/bin/snakemake" --executor slurm --jobs 100 \
        --slurm-status-command squeue --slurm-no-account \
        --slurm-init-seconds-before-status-checks 1 --quiet all)
      ;;
    *) echo "unknown tool $tool" >&2; exit 2 ;;
  esac
  printf '%s\t%s nodes\tfull %.1f s\t%.2f s/node\tno-op rerun %.2f s\n' "$tool" "$N" "$t" "$(echo "$t / $N" | bc -l)" "$r"
done
