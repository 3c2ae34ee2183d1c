#!/usr/bin/env bash
# start.sh - a one-node Slurm on 127.0.0.1 for the Slurm backend's tests:
# munged, slurmctld, slurmd, and slurmrestd (JWT, openapi/v0.0.38) on
# 127.0.0.1:6820.  Run as root on Debian 12.  Idempotent: installs only what
# is missing, rewrites slurm.conf only when the machine's changed, starts only
# what is not running.  Quiet on success but for its last line.
#
# REST clients: a token from `scontrol token username=USER lifespan=SECONDS`,
# sent as X-SLURM-USER-TOKEN with X-SLURM-USER-NAME=USER.  root's token
# works, and its jobs run as root, as sbatch's do for root.
set -euo pipefail

REST_ADDR=127.0.0.1:6820
REST_USER=slurmrest	# slurmrestd refuses to run as root or as SlurmUser
CONF=/etc/slurm/slurm.conf
JWT_KEY=/var/lib/slurm/jwt_hs256.key
RUN=/run/slurm
LOG=/var/log/slurm

die() { echo "slurm: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root"

# auth/jwt is a package of its own in Debian.
packages=(slurm-wlm slurmrestd slurm-wlm-jwt-plugin munge curl)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -q >/dev/null ||
		die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >/tmp/slurm-apt.log 2>&1 ||
		die "installing ${missing[*]} failed (see /tmp/slurm-apt.log)"
fi

id slurm >/dev/null 2>&1 || die "the package made no user slurm"
id "$REST_USER" >/dev/null 2>&1 ||
	useradd --system --no-create-home --shell /usr/sbin/nologin "$REST_USER"

node=$(hostname -s)
# slurmd -C reads the machine: CPUs, sockets, cores, threads, memory.
hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')
[ -n "$hw" ] || die "slurmd -C says nothing about this machine"

install -d -o slurm -g slurm -m 0755 /var/lib/slurm /var/lib/slurm/slurmctld "$RUN" "$LOG"
install -d -o root -g root -m 0755 /var/lib/slurm/slurmd
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
	install -d -o munge -g munge -m 0700 /etc/munge
	(umask 077; dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none)
	chown munge:munge /etc/munge/munge.key
fi
if [ ! -s "$JWT_KEY" ]; then
	(umask 077; dd if=/dev/urandom of="$JWT_KEY" bs=32 count=1 status=none)
fi
# Only slurmctld (SlurmUser) signs and checks tokens.
chown slurm:slurm "$JWT_KEY"
chmod 0600 "$JWT_KEY"

conf=$(cat <<EOF
# Written by dstack's tests/slurm/start.sh: one node on 127.0.0.1.
ClusterName=dstack
SlurmctldHost=$node(127.0.0.1)
SlurmUser=slurm
MailProg=/bin/true
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No cgroups in a container: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default a job would take all the node's memory.
DefMemPerCPU=512
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
# Finished jobs stay visible to scontrol and REST for an hour.
MinJobAge=3600
# Refuse at submission what no node of the partition can ever run.
EnforcePartLimits=ALL
KillWait=5
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
# A job of urgent cancels debug's jobs in its way: the preemption test.
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=$node MaxTime=INFINITE State=UP PriorityTier=10
EOF
)

running() {	# pidfile: whether the process it names is alive
	[ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$conf" ]; then
	# A changed node or key needs the daemons restarted, not reconfigured.
	"$(dirname "$0")/stop.sh" >/dev/null 2>&1 || true
	printf '%s\n' "$conf" >"$CONF"
fi

if ! running /run/munge/munged.pid; then
	runuser -u munge -- /usr/sbin/munged ||
		die "munged did not start"
fi
for _ in $(seq 50); do
	munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
	sleep 0.1
done
munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munge does not answer"

if ! running "$RUN/slurmctld.pid"; then
	slurmctld || die "slurmctld did not start (see $LOG/slurmctld.log)"
fi
for _ in $(seq 100); do
	scontrol ping 2>/dev/null | grep -q "is UP" && break
	running "$RUN/slurmctld.pid" || break
	sleep 0.2
done
scontrol ping 2>/dev/null | grep -q "is UP" || die "slurmctld does not answer (see $LOG/slurmctld.log)"

if ! running "$RUN/slurmd.pid"; then
	slurmd || die "slurmd did not start (see $LOG/slurmd.log)"
fi

if ! running "$RUN/slurmrestd.pid"; then
	# SLURM_JWT=daemon: slurmrestd passes each client's token on to slurmctld.
	setsid setpriv --reuid="$REST_USER" --regid="$REST_USER" --init-groups \
		env SLURM_JWT=daemon \
		/usr/sbin/slurmrestd -a rest_auth/jwt -s openapi/v0.0.38 "$REST_ADDR" \
		</dev/null >>"$LOG/slurmrestd.log" 2>&1 &
	echo $! >"$RUN/slurmrestd.pid"
fi

state=""
for _ in $(seq 150); do
	state=$(sinfo -h -n "$node" -o %t 2>/dev/null || true)
	case $state in
	idle|mix|alloc|comp) break ;;
	drain*|down*)
		# Left so by an earlier run (a restart, a killed job): it is ours.
		scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
	esac
	sleep 0.2
done
case $state in
idle|mix|alloc|comp) ;;
*) die "node $node is '${state:-missing}', not idle (see $LOG/slurmd.log)" ;;
esac

code=000
for _ in $(seq 100); do
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://$REST_ADDR/openapi/v3" || true)
	[ "$code" != 000 ] && break
	running "$RUN/slurmrestd.pid" || break
	sleep 0.1
done
[ "$code" != 000 ] || die "slurmrestd does not answer on $REST_ADDR (see $LOG/slurmrestd.log)"

echo "slurm: ready (node $node, rest http://$REST_ADDR)"
