#!/usr/bin/env bash
# Stand up a single-node SLURM cluster with accounting on localhost, idempotently.
#
#   sudo bash tests/slurm/start_local_slurm.sh      # root; Debian 12 (Slurm 22.05) or similar
#   sudo bash tests/slurm/stop_local_slurm.sh
#
# What it does (each step is skipped when already done):
#   1. apt-get installs munge, slurmctld, slurmd, slurm-client, slurmdbd and mariadb-server
#      (packages' own service start-up is suppressed; this script starts the daemons itself).
#   2. a munge key, then munged.
#   3. MariaDB on a unix socket only (no TCP), with a `slurm` database user that logs in by
#      unix-socket authentication (no password anywhere).
#   4. /etc/slurm/slurmdbd.conf and /etc/slurm/slurm.conf: one node with this machine's CPUs and
#      ~85 % of its memory, DefMemPerCPU (else a job without --mem takes the whole node),
#      proctrack/linuxproc + task/none (no cgroups here: memory limits are not enforced, time
#      limits are), partition `debug`, MinJobAge=300 (squeue keeps finished jobs visible), and
#      one fake GPU (gres `gpu` on /dev/null) so that jobs submitted with --gpus schedule; they
#      see no CUDA device and run on the CPU.
#   5. slurmdbd, the cluster and an account `hccrad` (root and the invoking user) in sacctmgr,
#      then slurmctld and slurmd, each started with a PID file under /run/slurm.
#   6. waits until `sinfo` shows the node idle; exits non-zero with the reason and the daemons'
#      log tails when it does not within SLURM_LOCAL_TIMEOUT seconds (default 90).
#
# Snakemake's SLURM plugin polls job states with `sacct` whenever a sacct binary exists (and
# slurm-client installs one); without an accounting database it loses track of jobs and waits
# forever. Hence the accounting database.
set -euo pipefail

CLUSTER=${SLURM_LOCAL_CLUSTER:-hccrad}
ACCOUNT=${SLURM_LOCAL_ACCOUNT:-hccrad}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-90}
MEM_FRACTION=${SLURM_LOCAL_MEM_FRACTION:-85}  # percent of MemTotal given to SLURM
FAKE_GPUS=${SLURM_LOCAL_FAKE_GPUS:-1}  # GPUs the node advertises (gres on /dev/null, no CUDA)
NODE=$(hostname -s)
RUN=/run/slurm
LOG=/var/log/slurm
DB_SOCKET=/run/mysqld/mysqld.sock
DB_PID=/run/mysqld/mysqld.pid
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

say() { printf '[start_local_slurm] %s\n' "$*"; }
die() {
    printf '[start_local_slurm] ERROR: %s\n' "$*" >&2
    for f in "$LOG"/slurmctld.log "$LOG"/slurmd.log "$LOG"/slurmdbd.log "$LOG"/mariadb.log \
        /var/log/munge/munged.log; do
        [[ -s $f ]] && { printf -- '--- tail of %s ---\n' "$f" >&2; tail -n 15 "$f" >&2; }
    done
    exit 1
}

# alive PIDFILE NAME: the PID file names a live process whose command is NAME
alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/comm ]] && [[ $(</proc/"$pid"/comm) == "$2"* ]]
}

# wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.5 s until it succeeds
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "$what not ready after ${secs}s"
}

[[ $(id -u) -eq 0 ]] || die "must run as root (starts system daemons; CI runs as root)"
t_start=$SECONDS

# --- 1. packages -------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # keep the packages' maintainer scripts from starting services; removed again below
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_ok=1
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >/tmp/start_local_slurm.apt.log 2>&1 || apt_ok=0
    ((created_policy)) && rm -f /usr/sbin/policy-rc.d
    ((apt_ok)) || { tail -n 20 /tmp/start_local_slurm.apt.log >&2; die "apt-get install failed"; }
fi

install -d -o slurm -g slurm -m 755 "$RUN" "$LOG" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd

# --- 2. munge ----------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating the munge key"
    mungekey --create --keyfile=/etc/munge/munge.key --force
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
if ! alive /run/munge/munged.pid munged; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
fi
wait_for 20 "munge" bash -c 'munge -n | unmunge'

# --- 3. MariaDB on a unix socket ---------------------------------------------------------------
if [[ ! -d /var/lib/mysql/mysql ]]; then
    say "initialising the MariaDB data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
install -d -o mysql -g root -m 755 /run/mysqld
touch "$LOG/mariadb.log" && chown mysql "$LOG/mariadb.log"
if ! alive "$DB_PID" mariadbd; then
    say "starting mariadbd (unix socket $DB_SOCKET, no networking)"
    setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking \
        --socket="$DB_SOCKET" --pid-file="$DB_PID" --log-error="$LOG/mariadb.log" \
        </dev/null >/dev/null 2>&1 &
fi
wait_for 60 "mariadbd" mariadb-admin --socket="$DB_SOCKET" ping
mariadb --socket="$DB_SOCKET" -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || die "cannot create the slurm database"

# --- 4. configuration --------------------------------------------------------------------------
cpus=$(nproc)
mem_mb=$(awk -v f="$MEM_FRACTION" '/^MemTotal:/ {printf "%d", $2 / 1024 * f / 100}' /proc/meminfo)
def_mem=$((mem_mb / cpus))
((def_mem > 2000)) && def_mem=2000

# write_conf FILE OWNER MODE: stdin into FILE when it differs; return 0 when it changed
write_conf() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
        return 1
    fi
    install -o "$2" -g "$2" -m "$3" "$tmp" "$1"
    rm -f "$tmp"
}

changed=0
write_conf /etc/slurm/slurmdbd.conf slurm 600 <<EOF && changed=1 || true
# written by tests/slurm/start_local_slurm.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
gres_node=""
if ((FAKE_GPUS > 0)); then
    gres_node="Gres=gpu:$FAKE_GPUS"
    write_conf /etc/slurm/gres.conf root 644 <<EOF && changed=1 || true
# written by tests/slurm/start_local_slurm.sh: fake GPUs for scheduling tests (no device)
NodeName=$NODE Name=gpu Count=$FAKE_GPUS File=/dev/null
EOF
fi
write_conf /etc/slurm/slurm.conf root 644 <<EOF && changed=1 || true
# written by tests/slurm/start_local_slurm.sh: one node on localhost, partition debug
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# no cgroups here: processes tracked by parent id, no task binding or memory enforcement
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# a job without --mem gets this per CPU instead of the whole node
DefMemPerCPU=$def_mem
# finished jobs stay visible to squeue/scontrol for 5 minutes
MinJobAge=300
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# record GPU allocations (sacct AllocTRES shows gres/gpu)
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb $gres_node State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

if ((changed)); then
    # a changed configuration takes effect on a fresh start of the SLURM daemons
    for d in slurmd slurmctld slurmdbd; do
        if alive "$RUN/$d.pid" "$d"; then
            say "configuration changed: stopping $d"
            kill "$(<"$RUN/$d.pid")"
            for _ in $(seq 60); do alive "$RUN/$d.pid" "$d" || break; sleep 0.5; done
        fi
    done
fi

# --- 5. daemons and accounts -------------------------------------------------------------------
if ! alive "$RUN/slurmdbd.pid" slurmdbd; then
    say "starting slurmdbd"
    slurmdbd || die "slurmdbd failed to start"
fi
wait_for 60 "slurmdbd" sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    say "registering cluster $CLUSTER"
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
fi
if ! sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT"; then
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=hccrad-tests \
        Organization=hccrad >/dev/null || die "sacctmgr add account failed"
fi
users=(root)
[[ -n ${SUDO_USER:-} && $SUDO_USER != root ]] && users+=("$SUDO_USER")
for u in "${users[@]}"; do
    if ! sacctmgr -n -P list assoc user="$u" account="$ACCOUNT" format=user | grep -qx "$u"; then
        sacctmgr -i add user "$u" Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null ||
            die "sacctmgr add user $u failed"
    fi
done

if ! alive "$RUN/slurmctld.pid" slurmctld; then
    say "starting slurmctld"
    slurmctld || die "slurmctld failed to start"
fi
wait_for 60 "slurmctld" scontrol ping
if ! alive "$RUN/slurmd.pid" slurmd; then
    say "starting slurmd (node $NODE: $cpus CPUs, ${mem_mb} MB, DefMemPerCPU=$def_mem)"
    slurmd || die "slurmd failed to start"
fi

# --- 6. wait for the node ----------------------------------------------------------------------
resumed=0
state=""
for ((i = 0; i < TIMEOUT * 2; i++)); do
    state=$(sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n 1)
    case $state in
        idle | mixed | allocated | completing) break ;;
        down* | drain* | inval* | fail*)
            if ((!resumed)); then
                scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                resumed=1
            fi
            ;;
    esac
    sleep 0.5
done
case $state in
    idle | mixed | allocated | completing) ;;
    *)
        reason=$(sinfo -h -n "$NODE" -o '%E' 2>/dev/null || true)
        die "node $NODE is '${state:-unknown}' after ${TIMEOUT}s (reason: ${reason:-none})"
        ;;
esac
say "cluster $CLUSTER up in $((SECONDS - t_start)) s: node $NODE $state, partition debug"
