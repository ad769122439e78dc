#!/usr/bin/env bash
# A one-machine Slurm cluster for developing and testing flow's Slurm executor.
#
#   scripts/slurm-local.sh up       install (apt-get) if missing, configure, start, wait for idle
#   scripts/slurm-local.sh down     stop exactly the daemons `up` started (by their PID files)
#   scripts/slurm-local.sh status   what is running, and the node's state
#
# Runs as root (CI, a container, a dev VM) without systemd: munged, slurmctld and slurmd are
# started directly. `up` is idempotent: daemons already running from an earlier `up` are kept.
# It writes /etc/slurm/slurm.conf (where every Slurm command looks for it) for this host's
# CPUs and memory (`slurmd -C`), with proctrack/linuxproc and task/none (no cgroups needed),
# select/cons_tres, and memory enforcement by polling (jobacct_gather/linux + OverMemoryKill).
# It refuses to replace a slurm.conf it did not write.
#
# Environment:
#   FLOW_SLURM_DIR   state, spool, logs and PID files (default: /var/tmp/flow-slurm-local)
set -euo pipefail

DIR="${FLOW_SLURM_DIR:-/var/tmp/flow-slurm-local}"
CONF=/etc/slurm/slurm.conf
MARK="# written by flow scripts/slurm-local.sh"
MUNGE_KEY=/etc/munge/munge.key

die() { echo "slurm-local: $*" >&2; exit 1; }
say() { echo "slurm-local: $*" >&2; }

# A PID file's process, when it is alive.
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
     && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return
  fi
  command -v apt-get >/dev/null || die "slurmctld/slurmd/munge are missing and there is no apt-get: install Slurm 22.05+ and munge by hand"
  say "installing slurmctld, slurmd, slurm-client and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
  mkdir -p "$DIR"
  if [ ! -s "$MUNGE_KEY" ]; then
    say "writing a munge key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
  fi
  chown munge:munge "$MUNGE_KEY" /etc/munge 2>/dev/null || true
  chmod 0400 "$MUNGE_KEY"
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  if alive "$DIR/munged.pid"; then return; fi
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged is already running (not started here; left alone)"
    return
  fi
  runuser -u munge -- munged --pid-file=/run/munge/munged.pid
  for _ in $(seq 50); do
    [ -s /run/munge/munged.pid ] && break
    sleep 0.1
  done
  cp /run/munge/munged.pid "$DIR/munged.pid"
  munge -n </dev/null | unmunge >/dev/null || die "munged started but munge/unmunge fail"
}

write_conf() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script: refusing to replace it"
  fi
  local host node
  host="$(hostname -s)"
  # `slurmd -C` prints this host's NodeName line (CPUs, sockets, cores, RealMemory).
  node="$(slurmd -C | head -1)"
  [[ "$node" == NodeName=* ]] || die "slurmd -C printed no NodeName line"
  # A job without --mem gets DefMemPerCPU per CPU (without it, all of the node's memory,
  # and jobs would run one at a time): 1 GiB, or less on a small machine.
  local cpus mem defmem
  cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")"
  mem="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")"
  defmem=$(( mem / cpus < 1024 ? mem / cpus : 1024 ))
  mkdir -p /etc/slurm "$DIR/state" "$DIR/spool"
  cat >"$CONF.tmp" <<EOF
$MARK (FLOW_SLURM_DIR=$DIR)
ClusterName=flowlocal
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
DefMemPerCPU=$defmem
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -1; }

up() {
  [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"
  install_packages
  start_munge
  write_conf
  if ! alive "$DIR/slurmctld.pid"; then
    slurmctld -i
  fi
  if ! alive "$DIR/slurmd.pid"; then
    slurmd
  fi
  local state=""
  for _ in $(seq 120); do
    state="$(node_state)"
    case "$state" in
      idle|mixed|allocated) break ;;
      down*|drain*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  case "$state" in
    idle|mixed|allocated) say "up: node $(hostname -s) is $state (logs: $DIR)" ;;
    *) die "the node did not become idle (state: '${state:-none}'); see $DIR/slurmctld.log and $DIR/slurmd.log" ;;
  esac
}

# Stops the daemon of PID file $1 (SIGTERM, then SIGKILL after 10 s) and removes the file.
stop() {
  local f="$1" pid
  [ -s "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
}

down() {
  stop "$DIR/slurmd.pid"
  stop "$DIR/slurmctld.pid"
  stop "$DIR/munged.pid"
  say "down"
}

status() {
  local d
  for d in munged slurmctld slurmd; do
    if alive "$DIR/$d.pid"; then echo "$d: running (pid $(cat "$DIR/$d.pid"))"; else echo "$d: not started here"; fi
  done
  echo "node: $(node_state || true)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
