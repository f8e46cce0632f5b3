#!/usr/bin/env bash
# A single-node SLURM cluster on loopback for the tests (tests/e2e/test_slurm.py), Debian only.
#
#   sudo tests/slurm/start.sh        # install if needed, configure, start, wait until idle
#
# Every call gives a fresh cluster: the daemons of an earlier call are stopped, their job steps
# killed and slurmctld started with an empty queue (-c), so jobs left behind by a run that was
# killed (a pytest timeout, a CI machine reused between runs) cannot hold the node's CPUs and
# keep the next run's jobs pending for ever. The script then runs one trivial job (`srun
# true`) and only reports success once that job has run. It never touches a cluster it did
# not configure itself: an /etc/slurm/slurm.conf without this script's marker line is left
# alone (exit 3).
#
# What it sets up (SLURM 22.05 from Debian bookworm, munge for authentication):
# - slurmctld and slurmd for this host on 127.0.0.1, partition `debug` (default), all CPUs and
#   nearly all memory of the machine, CPUs and memory as consumable resources (cons_tres), so
#   the tests can check that `--cpus-per-task`, `--mem` and `--time` reach SLURM;
# - no accounting database (AccountingStorageType=accounting_storage/none): `sacct` does not
#   work, jobs stay visible to `squeue --states=all` / `scontrol show job` for MinJobAge s;
# - FAKE_GPUS (default 4) fake GPUs: gres/gpu with `File=` pointing at character devices
#   /dev/nvidia0.. (major 195, as NVIDIA's driver) that this script creates. There is no GPU
#   behind them: jobs asking for `--gpus=N` are scheduled and get CUDA_VISIBLE_DEVICES, which
#   is all a test of the submission path needs. FAKE_GPUS=0 configures no GPUs.
#
# Exit codes: 0 running, idle and a test job ran; 2 cannot start here (not root, no apt, a
# daemon failed, the node does not come up or does not run a trivial job): the reason is the
# last line on stderr and the daemons' logs are under /var/log/slurm; 3 an existing
# slurm.conf that is not ours.
set -euo pipefail

FAKE_GPUS=${FAKE_GPUS:-4}
WAIT_S=${WAIT_S:-60}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARKER="# written by utilann tests/slurm/start.sh"
LOG_DIR=/var/log/slurm

die() { echo "slurm/start.sh: $*" >&2; exit "${2:-2}"; }
log() { echo "slurm/start.sh: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (installs packages, writes $CONF, starts daemons)"
command -v apt-get >/dev/null || die "no apt-get: install slurmctld, slurmd, slurm-client and munge yourself"

# --- packages ------------------------------------------------------------------------------
PACKAGES=(slurmctld slurmd slurm-client munge)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/slurm-apt.log 2>&1; then
    apt-get update -q >>/tmp/slurm-apt.log 2>&1 || true
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/slurm-apt.log 2>&1 \
      || die "apt-get install ${missing[*]} failed (see /tmp/slurm-apt.log)"
  fi
fi

# --- munge ---------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null 2>&1 || die "munge does not authenticate (see /var/log/munge/munged.log)"
fi

# --- configuration -------------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc)
# Leave 1 GiB (at least 10 %) to the OS: a node whose RealMemory exceeds what slurmd finds is
# set to INVAL.
TOTAL_MB=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
RESERVE_MB=$(( TOTAL_MB / 10 > 1024 ? TOTAL_MB / 10 : 1024 ))
MEM_MB=$(( TOTAL_MB - RESERVE_MB ))

GRES_NODE=""
GRES_TYPES=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  for i in $(seq 0 $((FAKE_GPUS - 1))); do
    [ -e "/dev/nvidia$i" ] || mknod -m 666 "/dev/nvidia$i" c 195 "$i"
  done
  GRES_NODE="Gres=gpu:$FAKE_GPUS"
  GRES_TYPES="GresTypes=gpu"
fi

conf=$(cat <<EOF
$MARKER: a single-node test cluster on loopback.
ClusterName=utilann-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
# Jobs without --mem get 1 GB per CPU instead of the whole node.
DefMemPerCPU=1000
# Finished jobs stay visible to squeue/scontrol for an hour: the status command of
# snakemake's SLURM plugin (squeue without accounting) and the tests read them there.
MinJobAge=3600
ReturnToService=2
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
$GRES_TYPES
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB $GRES_NODE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
gres=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  gres=$(printf '%s\nAutoDetect=off\nNodeName=%s Name=gpu File=/dev/nvidia[0-%d]\n' \
    "$MARKER" "$HOST" $((FAKE_GPUS - 1)))
fi

if [ -e "$CONF" ] && ! head -1 "$CONF" | grep -qF "$MARKER"; then
  die "$CONF exists and was not written by this script: not touching that cluster" 3
fi
mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
printf '%s\n' "$conf" >"$CONF"
if [ -n "$gres" ]; then printf '%s\n' "$gres" >"$CONF_DIR/gres.conf"; else rm -f "$CONF_DIR/gres.conf"; fi

# --- daemons -------------------------------------------------------------------------------
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() {
  if running "$1"; then
    local pid; pid=$(cat "$1"); kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    die "$2 (pid $pid) did not stop"
  fi
}
log "configuration in $CONF (CPUs=$CPUS RealMemory=$MEM_MB fake GPUs=$FAKE_GPUS); starting a fresh cluster"
stop /run/slurmd.pid slurmd
stop /run/slurmctld.pid slurmctld
# Job steps of an earlier cluster outlive slurmd; they would keep running under the new one.
pkill -x slurmstepd 2>/dev/null || true
# -c: start with an empty queue (no jobs of an earlier run).
/usr/sbin/slurmctld -c || die "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
scontrol ping >/dev/null 2>&1 || die "slurmctld does not answer (see $LOG_DIR/slurmctld.log)"
/usr/sbin/slurmd || die "slurmd did not start (see $LOG_DIR/slurmd.log)"

# --- wait for the node ---------------------------------------------------------------------
# One line (the tests show start.sh's last line of stderr as the reason).
diagnose() {
  printf 'sinfo: %s | squeue: %s | slurmd.log: %s' \
    "$(sinfo -h -N -o '%N %T reason=%E cpus(A/I/O/T)=%C mem=%m' 2>&1 | head -3 | tr '\n' ';')" \
    "$(squeue -h -o '%i %j %T reason=%r' 2>&1 | head -10 | tr '\n' ';')" \
    "$(tail -5 "$LOG_DIR/slurmd.log" 2>/dev/null | tr '\n' ';')"
}
state=""
for _ in $(seq $((WAIT_S * 2))); do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1)
  case "$state" in
    idle) break ;;
    down* | drain* | drained*)
      scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
[ "$state" = idle ] || die "node $HOST is '${state:-unknown}' after ${WAIT_S}s, not idle; $(diagnose)"

# --- one trivial job -----------------------------------------------------------------------
if ! out=$(timeout "$WAIT_S" srun --time=1 --mem=100 --job-name=start-check true 2>&1); then
  msg="a trivial job (srun true) did not run within ${WAIT_S}s: ${out//$'\n'/ }; $(diagnose)"
  scancel --name=start-check >/dev/null 2>&1 || true
  die "$msg"
fi
log "node $HOST $state: $(sinfo -h -N -o '%c CPUs, %m MB, gres %G' | head -1); a test job ran"
