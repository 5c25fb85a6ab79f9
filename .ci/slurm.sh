#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the sweep's SLURM tests: `bash .ci/slurm.sh start|stop`.
# Debian's slurm-wlm with munge, as root, no systemd: linuxproc process tracking, no task plugin, this host the
# only node with its real CPU count. Installs the packages when missing (apt); prints why when it cannot start.
set -euo pipefail
cmd=${1:-start}
host=$(hostname -s)
conf=/etc/slurm/slurm.conf

marker=/etc/slurm/.thesislab-test-cluster  # this script's own cluster: the only one it configures or stops

stop() {
    [[ -e $marker ]] || return 0
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
}

if [[ $cmd == stop ]]; then stop; exit 0; fi
if [[ $(id -u) != 0 ]]; then echo "slurm: not root, cannot start a cluster" >&2; exit 3; fi
if [[ -e $conf && ! -e $marker ]]; then
    echo "slurm: $conf is not this script's (a real SLURM install?): leaving it and its daemons alone" >&2
    exit 3
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || { echo "slurm: no apt-get to install slurm-wlm" >&2; exit 3; }
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >/dev/null
fi
stop
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
touch $marker
cat > $conf <<CONF
ClusterName=thesislab
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
[[ -s /etc/munge/munge.key ]] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged
slurmctld
slurmd
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then echo "slurm: one-node cluster up ($host, $(nproc) CPUs)"; exit 0; fi
    sleep 0.5
done
echo "slurm: the node did not come up: $(sinfo -h 2>&1 | head -1); see /var/log/slurm/" >&2
exit 3
