#!/usr/bin/env bash
# A throwaway one-node SLURM cluster on this machine, for the `slurm` tests (`make test-slurm`) and
# for trying `hydra=submitit_slurm` sweeps; nothing of it is needed on a real cluster.
#
#   bash scripts/slurm/cluster.sh up       # install (apt), configure, start; wait until the node is idle
#   bash scripts/slurm/cluster.sh down     # end the jobs (a minute's grace), stop the daemons
#   bash scripts/slurm/cluster.sh status   # the node's state, or why there is none
#
# Runs as root (Debian/Ubuntu: apt-get installs slurm-wlm and munge when absent). `up` is
# idempotent: a running cluster is left running (told to re-read a changed config). The config
# describes this machine (`slurmd -C`: host name, cores, memory) with one partition, `debug`, and
# none of what a shared cluster needs: no cgroups (ProctrackType=proctrack/linuxproc,
# TaskPlugin=task/none) and no accounting (so `sacct` answers nothing, as on clusters that run
# without it). A config not written by this script is never overwritten.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by cofi-lightning scripts/slurm/cluster.sh"
STATE=/var/spool/slurm-cofi
LOGS=/var/log/slurm-cofi
PARTITION=debug

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null && return
    [[ $(id -u) == 0 ]] || die "slurm-wlm and munge are missing; run as root to install them"
    command -v apt-get >/dev/null || die "slurm-wlm and munge are missing and there is no apt-get"
    echo "installing slurm-wlm and munge (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q slurm-wlm munge >/dev/null; }
}

write_config() {
    if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching it"
    fi
    local node
    node=$(slurmd -C | head -n 1)  # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
    [[ $node == NodeName=* ]] || die "slurmd -C did not describe this machine: $node"
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$LOGS"
    cat >"$CONF.new" <<EOF
$MARK
ClusterName=cofi
SlurmctldHost=$(hostname -s)
SlurmUser=root
AuthType=auth/munge
# a requeued job may start again after cred_expire seconds (default 120)
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld-cofi.pid
SlurmdPidFile=/run/slurmd-cofi.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# a requeued job waits for the next scheduling pass (default: every 60 s)
SchedulerParameters=sched_interval=2,bf_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=10
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    if cmp -s "$CONF.new" "$CONF"; then rm "$CONF.new"; else mv "$CONF.new" "$CONF" && CHANGED=1; fi
}

# The daemons' pid files (munged's is Debian's default): each daemon is found and stopped by its id.
declare -A PIDFILE=([munged]=/run/munge/munged.pid [slurmctld]=/run/slurmctld-cofi.pid
    [slurmd]=/run/slurmd-cofi.pid)

pid_of() { [[ -f ${PIDFILE[$1]} ]] && cat "${PIDFILE[$1]}"; }

running() {
    local pid
    pid=$(pid_of "$1") && kill -0 "$pid" 2>/dev/null
}

node_state() { sinfo -h -N -o %T 2>/dev/null | head -n 1; }

up() {
    install_packages
    write_config
    if ! running munged; then
        mkdir -p /run/munge && chown munge:munge /run/munge
        runuser -u munge -- munged
    fi
    if running slurmctld && [[ ${CHANGED:-0} == 1 ]]; then
        scontrol reconfigure  # the daemons re-read the new config
    fi
    running slurmctld || slurmctld -c  # -c: no jobs of an earlier session come back
    running slurmd || slurmd
    local state
    for _ in $(seq 60); do
        state=$(node_state)
        case $state in
            idle | mixed | allocated) echo "slurm cluster up: $(hostname -s), partition $PARTITION, node $state"; return ;;
            down* | drain* | unknown*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    die "the node did not become idle within 60 s (state: ${state:-none}); see $LOGS/"
}

down() {
    local name
    if running slurmctld; then
        # jobs still finishing (a DDP rank's exit, W&B's sync) end first; whatever remains after a
        # minute is cancelled, so that no job outlives the daemons in their saved state
        for _ in $(seq 60); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 1; done
        scancel --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 30); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 1; done
    fi
    for name in slurmd slurmctld munged; do
        if running "$name"; then
            kill "$(pid_of "$name")"
            for _ in $(seq 20); do running "$name" || break; sleep 0.5; done
        fi
    done
    echo "slurm cluster down"
}

status() {
    running slurmctld || die "slurmctld is not running (bash scripts/slurm/cluster.sh up)"
    echo "node $(hostname -s): $(node_state)"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) die "usage: bash scripts/slurm/cluster.sh up|down|status" ;;
esac
