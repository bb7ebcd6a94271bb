#!/usr/bin/env bash
# A throw-away one-node SLURM cluster on this machine, for tests (tests/test_slurm.py) and for trying things by hand.
#
#   tests/slurm/cluster.sh start DIR   # munged + slurmctld + slurmd, all files under DIR; waits until the node is idle
#   export SLURM_CONF=DIR/slurm.conf PATH=DIR/bin:$PATH   # then sbatch, srun, squeue, sinfo, sacct (a stand-in) work
#   tests/slurm/cluster.sh stop DIR    # cancels its jobs, stops what `start` started, removes DIR
#
# Needs root (slurmd runs jobs as their user) and Debian's slurm-wlm and munge. Nothing outside DIR is written:
# munged gets its own key, socket, pid and log files, the daemons their own ports (free ones, picked at start), state
# and spool folders. No accounting database: DIR/bin/sacct answers from squeue (finished jobs stay listed for an hour,
# MinJobAge), which is all submitit asks of sacct. `start` exits 1 with the daemons' last log lines when it cannot.
set -uo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")

fail() {  # the reason, then the end of every log there is
  echo "slurm test cluster: $*" >&2
  for log in "$dir"/log/*.log; do
    [ -s "$log" ] && { echo "--- $(basename "$log") (last lines)" >&2; tail -n 15 "$log" >&2; }
  done
  exit 1
}

free_port() {  # a TCP port nobody listens on, from a range away from SLURM's defaults
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 20000))
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . || { echo "$port"; return; }
  done
  echo $((20000 + RANDOM % 20000))
}

pids() { cat "$dir"/run/*.pid 2>/dev/null; }

alive() {  # a running process (a zombie waiting to be reaped is not)
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ]
}

start() {
  [ "$(id -u)" = 0 ] || { echo "slurm test cluster: needs root (slurmd starts jobs as their user)" >&2; exit 1; }
  for bin in munged mungekey slurmctld slurmd sbatch srun squeue sinfo scontrol scancel; do
    command -v "$bin" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$bin" >/dev/null \
      || { echo "slurm test cluster: $bin not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
  done
  export PATH=$PATH:/usr/sbin:/sbin
  [ -e "$dir/slurm.conf" ] && { echo "slurm test cluster: $dir already holds one (stop it first)" >&2; exit 1; }
  mkdir -p "$dir"/{munge,state,spool,log,run,bin} || exit 1
  chmod 755 "$dir" "$dir/munge"

  # munge: its own key (root-owned, 0600, as munged insists), socket, pid, log and seed files
  mungekey --create --keyfile="$dir/munge/munge.key" 2>"$dir/log/mungekey.log" \
    || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none || fail "cannot make a munge key"
  chmod 600 "$dir/munge/munge.key"
  local socket="$dir/munge/munge.socket"
  munged --force --socket="$socket" --key-file="$dir/munge/munge.key" --pid-file="$dir/run/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" 2>>"$dir/log/munged.log" \
    || fail "munged did not start"
  for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
  [ -S "$socket" ] || fail "munged made no socket"

  # slurm.conf: this machine as the one node, in one default partition; no cgroups, no accounting
  local host cpus mem node
  host=$(hostname -s)
  node=$(slurmd -C 2>/dev/null | head -n 1)
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node"); cpus=${cpus:-$(nproc)}
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node"); mem=${mem:-$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024))}
  cat >"$dir/slurm.conf" <<EOF
# written by tests/slurm/cluster.sh: a one-node test cluster in $dir
ClusterName=dlruntest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobRequeue=1
MinJobAge=3600
KillWait=5
InactiveLimit=0
PropagateResourceLimits=NONE
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"

  # sacct without a database: what submitit reads (JobID|State|NodeList) from squeue, which lists ended jobs
  # for MinJobAge; any other question gets an empty answer
  cat >"$dir/bin/sacct" <<'EOF'
#!/usr/bin/env bash
# sacct stand-in for a cluster without accounting (tests/slurm/cluster.sh): submitit's `sacct -o JobID,State,NodeList
# --parsable2 -j ID ...` answered from squeue.
ids=()
while [ $# -gt 0 ]; do case "$1" in -j|--jobs) ids+=("$2"); shift 2;; *) shift;; esac; done
echo "JobID|State|NodeList"
[ ${#ids[@]} -eq 0 ] && exit 0
squeue -h --states=all -r -j "$(IFS=,; echo "${ids[*]}")" -o "%i|%T|%N" 2>/dev/null
exit 0
EOF
  chmod 755 "$dir/bin/sacct"

  slurmctld -f "$SLURM_CONF" -c -i 2>>"$dir/log/slurmctld.log" || fail "slurmctld did not start"
  slurmd -f "$SLURM_CONF" 2>>"$dir/log/slurmd.log" || fail "slurmd did not start"
  local state=""
  for _ in $(seq 120); do  # up to 60 s
    state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1)
    case "$state" in idle) break;; down*|drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1;; esac
    for p in slurmctld slurmd; do
      [ -s "$dir/run/$p.pid" ] && ! alive "$(cat "$dir/run/$p.pid")" && fail "$p exited"
    done
    sleep 0.5
  done
  [ "$state" = idle ] || fail "the node is not idle after 60 s (sinfo says '${state:-nothing}')"
  echo "slurm test cluster up: export SLURM_CONF=$SLURM_CONF PATH=$dir/bin:\$PATH"
}

stop() {
  [ -d "$dir" ] || return 0
  export SLURM_CONF="$dir/slurm.conf" PATH=$PATH:/usr/sbin:/sbin
  if [ -e "$SLURM_CONF" ] && [ -s "$dir/run/slurmctld.pid" ] && alive "$(cat "$dir/run/slurmctld.pid")"; then
    scancel --full --quiet --user=root 2>/dev/null
    for _ in $(seq 40); do  # their job steps end (KillWait=5)
      [ -z "$(squeue -h -t running,completing,configuring 2>/dev/null)" ] && break
      sleep 0.25
    done
  fi
  # what is left of its jobs: their slurmstepd processes (they hold files in its spool folder) and the jobs'
  # own processes (SLURM_JOB_ID and this SLURM_CONF in their environment); then the daemons
  local steps p
  steps=$(for p in $(pgrep -x slurmstepd); do
            ls -l "/proc/$p/fd" 2>/dev/null | grep -q -- "$dir/" && echo "$p"; done
          for p in $(grep -lsz "^SLURM_CONF=$dir/slurm.conf\$" /proc/[0-9]*/environ | cut -d/ -f3); do
            [ "$p" != $$ ] && { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -q '^SLURM_JOB_ID=' && echo "$p"; done)
  for p in $steps $(pids); do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local left=""
    for p in $steps $(pids); do alive "$p" && left=1; done
    [ -z "$left" ] && break
    sleep 0.2
  done
  for p in $steps $(pids); do alive "$p" && kill -KILL "$p" 2>/dev/null; done
  rm -rf "$dir"
}

status() {
  local p
  for f in "$dir"/run/*.pid; do
    [ -s "$f" ] || continue
    p=$(cat "$f")
    alive "$p" && echo "$(basename "$f" .pid) $p running" || echo "$(basename "$f" .pid) $p gone"
  done
}

case "$cmd" in
  start) start;;
  stop) stop;;
  status) status;;
  *) usage;;
esac
