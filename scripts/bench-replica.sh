#!/usr/bin/env bash
# Ingest with --min-replica-acks 1 as a ratio of ingest without a replica,
# measured in interleaved rounds on this machine (docs/replica.md, Figures):
#
#   scripts/bench-replica.sh                     # 3 rounds of 1M lines
#   scripts/bench-replica.sh --rounds 5 --lines 400000
#   scripts/bench-replica.sh --pin               # primary on CPU 0, replica and pushers on CPU 1
#
# Each round runs the same load (finelog bench: 4 pushers, batches of 1000,
# 1000 keys) twice against fresh data dirs: once at a lone finelogd, once
# at a primary whose acks wait for a standby following it over the peer
# port. On a machine of 2 cores the two daemons and the pushers share the
# cores, so the replica's own CPU (it applies and compacts every row too)
# is charged to the ratio; --pin keeps the primary's core to itself in both
# runs, which is closer to a primary and a standby on separate machines.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

usage() {
	echo "usage: scripts/bench-replica.sh [--rounds N] [--lines N] [--concurrency N] [--pin]" >&2
	exit 2
}
rounds=3 lines=1000000 concurrency=4 pin=
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) [ $# -ge 2 ] || usage; rounds=$2; shift 2 ;;
	--lines) [ $# -ge 2 ] || usage; lines=$2; shift 2 ;;
	--concurrency) [ $# -ge 2 ] || usage; concurrency=$2; shift 2 ;;
	--pin) pin=1; shift ;;
	*) echo "bench-replica: unknown argument $1" >&2; usage ;;
	esac
done
for v in "$rounds" "$lines" "$concurrency"; do
	case "$v" in '' | *[!0-9]* | 0) echo "bench-replica: $v: want a positive whole number" >&2; exit 2 ;; esac
done
if [ -n "$pin" ] && ! command -v taskset >/dev/null; then
	echo "bench-replica: --pin needs taskset (util-linux)" >&2
	exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/finelog-replica-bench-XXXXXX")
pids=()
stop_all() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT
log() { echo "bench-replica: $*" >&2; }

go build -o "$work/finelog" ./cmd/finelog
go build -o "$work/finelogd" ./cmd/finelogd
head -c 48 /dev/urandom >"$work/peer.psk"
# cpu0/cpu1 prefix a command to run it on one CPU with --pin. taskset
# execs the command, so $! of a backgrounded one is the daemon's own pid.
cpu0=() cpu1=()
if [ -n "$pin" ]; then cpu0=(taskset -c 0) cpu1=(taskset -c 1); fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_health() {
	for _ in $(seq 200); do
		curl -fsS "$1/health" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	log "no /health at $1"
	exit 1
}

# run_once MODE: one bench against a fresh lone store (MODE=alone) or a
# primary with a following replica (MODE=replica); prints lines/s.
run_once() {
	local mode=$1 dir port peer
	dir=$(mktemp -d "$work/$mode-XXXX")
	port=$(free_port)
	if [ "$mode" = replica ]; then
		peer=$(free_port)
		"${cpu0[@]}" "$work/finelogd" --data-dir "$dir/p" --listen "127.0.0.1:$port" --node-name p \
			--peer-listen "127.0.0.1:$peer" --peer-psk-file "$work/peer.psk" --min-replica-acks 1 2>"$dir/p.log" &
		pids+=($!)
		local ppid=$!
		wait_health "http://127.0.0.1:$port"
		local rport
		rport=$(free_port)
		"${cpu1[@]}" "$work/finelogd" --data-dir "$dir/r" --listen "127.0.0.1:$rport" --node-name r \
			--replica-of "127.0.0.1:$peer" --peer-psk-file "$work/peer.psk" 2>"$dir/r.log" &
		pids+=($!)
		rpid=$!
		wait_health "http://127.0.0.1:$rport"
		# Wait for the standby to subscribe, or the first pushes time out.
		for _ in $(seq 200); do
			grep -q '"replicas":1' <(curl -fsS "http://127.0.0.1:$port/health") && break
			sleep 0.05
		done
	else
		"${cpu0[@]}" "$work/finelogd" --data-dir "$dir/p" --listen "127.0.0.1:$port" 2>"$dir/p.log" &
		pids+=($!)
		local ppid=$!
		wait_health "http://127.0.0.1:$port"
	fi
	"${cpu1[@]}" "$work/finelog" bench --addr "http://127.0.0.1:$port" --lines "$lines" --concurrency "$concurrency" \
		--pid "$ppid" --progress 1h >"$dir/bench.out"
	if [ "$mode" = replica ]; then
		# The standby's CPU (user + system) per million lines, read from
		# /proc two seconds after the last push so the flush or adoption
		# of the last rows is counted too.
		sleep 2
		awk -v tck="$(getconf CLK_TCK)" -v lines="$lines" '{ printf "standby CPU %.2f s per million lines\n", ($14 + $15) / tck / lines * 1e6 }' "/proc/$rpid/stat" >&2
	fi
	stop_all
	awk -v mode="$mode" '$1 == "server" && $2 == "CPU" { printf "%s: primary CPU %s s per million lines\n", mode, $6 }' "$dir/bench.out" >&2
	awk '$1 == "throughput" { print $2; exit }' "$dir/bench.out"
	rm -rf "$dir"
}

log "$rounds rounds of $lines lines, $concurrency pushers${pin:+, primary pinned to CPU 0}"
ratios=()
for r in $(seq "$rounds"); do
	# Alternate the order so drift in the machine hits both sides alike.
	if [ $((r % 2)) = 1 ]; then
		a=$(run_once alone)
		b=$(run_once replica)
	else
		b=$(run_once replica)
		a=$(run_once alone)
	fi
	ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')
	ratios+=("$ratio")
	printf 'round %d: alone %s lines/s, --min-replica-acks 1 %s lines/s: %sx\n' "$r" "$a" "$b" "$ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "median ratio %.2fx (range %.2f-%.2fx over %d rounds)\n", v[int((NR + 1) / 2)], v[1], v[NR], NR }'
