#!/usr/bin/env bash
# stop.sh - stops what tests/slurm/start.sh started: slurmrestd, slurmd,
# slurmctld, munged.  Jobs still running are killed with slurmd.  Quiet;
# a no-op when nothing runs.
set -uo pipefail

RUN=/run/slurm

stop() {	# pidfile: TERM the process it names, then wait for it to go
	local pid
	[ -s "$1" ] || return 0
	pid=$(cat "$1")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	fi
	rm -f "$1"
}

stop "$RUN/slurmrestd.pid"
stop "$RUN/slurmd.pid"
stop "$RUN/slurmctld.pid"
stop /run/munge/munged.pid
exit 0
