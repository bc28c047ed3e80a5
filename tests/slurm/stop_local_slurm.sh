#!/usr/bin/env bash
# Stop the local single-node SLURM cluster of start_local_slurm.sh: slurmd, slurmctld, slurmdbd,
# mariadbd and munged, each by its PID file (nothing else is touched). Idempotent; the
# configuration, munge key, accounting database and packages stay for the next start.
set -euo pipefail

RUN=/run/slurm
say() { printf '[stop_local_slurm] %s\n' "$*"; }

[[ $(id -u) -eq 0 ]] || { echo "[stop_local_slurm] ERROR: must run as root" >&2; exit 1; }

# stop PIDFILE NAME: TERM the process the PID file names (when it is NAME), wait, then KILL
stop() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name"* ]]; then
        say "stopping $name ($pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 60); do
            [[ -e /proc/$pid ]] || break
            sleep 0.5
        done
        if [[ -e /proc/$pid ]]; then
            say "$name did not exit in 30 s: killing it"
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

stop "$RUN/slurmd.pid" slurmd
stop "$RUN/slurmctld.pid" slurmctld
stop "$RUN/slurmdbd.pid" slurmdbd
stop /run/mysqld/mysqld.pid mariadbd
stop /run/munge/munged.pid munged
say "stopped"
