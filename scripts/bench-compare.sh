#!/usr/bin/env bash
# Measure every performance figure of docs/performance.md beside the
# machine's own limits, in one run:
#
#   scripts/bench-compare.sh                 # the standard load: 5M lines
#   scripts/bench-compare.sh --lines 500000  # a short run
#   scripts/bench-compare.sh --sustained     # also the sustained pair (below)
#
# 1. machine baselines on the disk under $TMPDIR (default /tmp): fdatasync
#    bandwidth (dd bs=1M conv=fdatasync, and with a sync per MiB, oflag=dsync)
#    and the single-fsync rate (dd bs=4k oflag=dsync);
# 2. the standard load against a spawned finelogd (finelog bench --spawn:
#    ~165-byte generated lines, 1,000 keys, batches of 1,000, 4 pushers),
#    with its CPU per million lines, peak RSS and disk bytes per line;
#    then, if VictoriaLogs is installed ($VICTORIALOGS, .bin-vl/ or PATH),
#    the same lines to its /insert/jsonline;
# 3. the go-test benchmarks behind the other figures (durable append,
#    single-row appends, relay drain, tail over the wire, JWT verify);
# 4. with --sustained: a 2M-line and a 15M-line run (--sustained-lines N:
#    N lines, and 2/15 of N for the short one), each against its own spawned
#    finelogd with a reader tailing one key every 200 ms (finelog bench
#    --tail-every): the long run's throughput over the short one's, CPU per
#    million lines, push and tail latency under ingest, and the write
#    amplification of flushing and compaction;
# 5. a summary: each figure, its target and its ratio to the baseline
#    measured in this run.
#
# Everything runs on this machine at once with nothing else: figures from
# a machine shared with other work are noisy (say so when quoting them).
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

usage() {
	echo "usage: scripts/bench-compare.sh [--lines N] [--sustained | --sustained-lines N]" >&2
	echo "  --lines N            lines for the standard ingest run (default 5000000)" >&2
	echo "  --sustained          also run 15000000 lines beside 2000000, with a reader tailing every 200 ms" >&2
	echo "  --sustained-lines N  the same with N lines beside 2/15 of N" >&2
	exit 2
}
lines=5000000
sus_lines=0
while [ $# -gt 0 ]; do
	case "$1" in
	--lines) [ $# -ge 2 ] || usage; lines=$2; shift 2 ;;
	--lines=*) lines=${1#--lines=}; shift ;;
	--sustained) sus_lines=15000000; shift ;;
	--sustained-lines) [ $# -ge 2 ] || usage; sus_lines=$2; shift 2 ;;
	--sustained-lines=*) sus_lines=${1#--sustained-lines=}; shift ;;
	-h | --help) usage ;;
	*) echo "bench-compare: unknown argument $1" >&2; usage ;;
	esac
done
case "$lines" in
'' | *[!0-9]*) echo "bench-compare: --lines $lines: want a positive whole number of lines" >&2; exit 2 ;;
esac
[ "$lines" -gt 0 ] || { echo "bench-compare: --lines must be positive" >&2; exit 2; }
case "$sus_lines" in
'' | *[!0-9]*) echo "bench-compare: --sustained-lines $sus_lines: want a positive whole number of lines" >&2; exit 2 ;;
esac
base_lines=$((sus_lines * 2 / 15))
if [ "$sus_lines" -gt 0 ] && [ "$base_lines" -lt 1000 ]; then
	echo "bench-compare: --sustained-lines $sus_lines: want at least 7500 (the short run is 2/15 of it)" >&2
	exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/finelog-compare-XXXXXX")
vlpid=
cleanup() {
	if [ -n "$vlpid" ]; then
		kill "$vlpid" 2>/dev/null || true
		wait "$vlpid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
log() { echo "bench-compare: $*" >&2; }

# dd_secs FILE: the seconds dd reported on its "copied" line.
dd_secs() { awk '/copied/ { for (i = 1; i < NF; i++) if ($i == "copied,") print $(i + 1) }' "$1"; }

log "machine baselines on $(dirname "$work")"
dd if=/dev/zero of="$work/dd" bs=1M count=256 conv=fdatasync 2>"$work/dd1" || { cat "$work/dd1" >&2; exit 1; }
fdatasync_mbs=$(awk -v s="$(dd_secs "$work/dd1")" 'BEGIN { printf "%.1f", 268.435456 / s }')
rm -f "$work/dd"
# The same bytes with an fdatasync after every MiB, as the store
# benchmark's own baseline does (one sync at the end mostly measures the
# page cache on a fast disk).
dd if=/dev/zero of="$work/dd" bs=1M count=256 oflag=dsync 2>"$work/dd3" || { cat "$work/dd3" >&2; exit 1; }
dsync_mbs=$(awk -v s="$(dd_secs "$work/dd3")" 'BEGIN { printf "%.1f", 268.435456 / s }')
rm -f "$work/dd"
dd if=/dev/zero of="$work/dd" bs=4k count=500 oflag=dsync 2>"$work/dd2" || { cat "$work/dd2" >&2; exit 1; }
fsync_rate=$(awk -v s="$(dd_secs "$work/dd2")" 'BEGIN { printf "%.0f", 500 / s }')
rm -f "$work/dd"
log "fdatasync bandwidth $fdatasync_mbs MB/s (one sync), $dsync_mbs MB/s (a sync per MiB); single-fsync rate $fsync_rate/s"

log "building finelog and finelogd"
go build -o "$work/finelog" ./cmd/finelog
go build -o "$work/finelogd" ./cmd/finelogd

vlbin=${VICTORIALOGS:-}
if [ -z "$vlbin" ] && [ -x .bin-vl/victoria-logs ]; then vlbin=.bin-vl/victoria-logs; fi
if [ -z "$vlbin" ]; then vlbin=$(command -v victoria-logs || true); fi
vlflag=()
if [ -n "$vlbin" ]; then
	vlport=$((20000 + RANDOM % 20000))
	"$vlbin" -httpListenAddr "127.0.0.1:$vlport" -storageDataPath "$work/vl" -retentionPeriod 100y \
		-loggerLevel WARN >"$work/vl.log" 2>&1 &
	vlpid=$!
	for _ in $(seq 100); do
		curl -fs "http://127.0.0.1:$vlport/health" >/dev/null 2>&1 && break
		sleep 0.1
	done
	if curl -fs "http://127.0.0.1:$vlport/health" >/dev/null 2>&1; then
		vlflag=(--victorialogs "http://127.0.0.1:$vlport")
		log "VictoriaLogs $vlbin at 127.0.0.1:$vlport"
	else
		log "VictoriaLogs $vlbin did not become healthy (log: $(tail -3 "$work/vl.log")); skipping it"
	fi
else
	log "VictoriaLogs not installed (set VICTORIALOGS=path, or: GOBIN=\$PWD/.bin-vl go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1); skipping it"
fi

log "ingest: $lines lines against a spawned finelogd"
"$work/finelog" bench --spawn --finelogd "$work/finelogd" --lines "$lines" --progress 30s "${vlflag[@]}" | tee "$work/bench.out"

if [ "$sus_lines" -gt 0 ]; then
	# Short run first: a run pays for nothing of the other's (own daemon,
	# own data dir), and the order matches the issue's statement.
	for n in "$base_lines" "$sus_lines"; do
		log "sustained: $n lines against a spawned finelogd, a reader tailing one key every 200 ms"
		"$work/finelog" bench --spawn --finelogd "$work/finelogd" --lines "$n" --progress 30s --tail-every 200ms | tee "$work/sustained-$n.out"
	done
fi

gobench() { # PKG REGEXP BENCHTIME
	log "go test $1 -bench '$2' -benchtime $3"
	go test "$1" -run '^$' -bench "$2" -benchtime "$3" -benchmem | tee -a "$work/gobench.out" | grep '^Benchmark' >&2 || true
}
: >"$work/gobench.out"
gobench ./store 'AppendDurable' 2s
gobench ./store 'FetchTail$' 20x
gobench ./relay 'RelayDrain|DirectIngest' 3x
gobench ./server 'FetchTailWire' 100x
gobench ./auth 'AdmitJWT$|AdmitJWTCold|HS256VerifyFloor' 100000x

# metric BENCH-REGEXP UNIT: the value reported with UNIT on the first line
# of a benchmark whose name matches.
metric() {
	awk -v re="$1" -v unit="$2" '$1 ~ re { for (i = 2; i <= NF; i++) if ($i == unit) { print $(i - 1); exit } }' "$work/gobench.out"
}
# ingest FIELD-REGEXP N: the Nth number on the first bench output line
# starting with FIELD.
ingest() { awk -v re="$1" -v n="$2" '$0 ~ re { c = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/ && ++c == n) { print $i; exit } }' "$work/bench.out"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'; }
or_dash() { if [ -n "$1" ]; then echo "$1"; else echo "-"; fi; }

fl_rate=$(ingest '^throughput' 1)
fl_cpu=$(ingest '^server CPU' 2)
fl_rss=$(ingest '^server RSS' 1)
fl_disk=$(ingest '^disk ' 1)
fl_rest=$(ingest '^disk at rest' 1)
vl_rate=$(awk '/^victorialogs/ { v = 1 } v && /^throughput/ { print $2; exit }' "$work/bench.out")
ad_mbs=$(metric 'AppendDurable/batch=1000' 'MB/s')
one_rate=$(metric 'AppendDurable/batch=1/' 'rows/s')
store_bpl=$(metric 'FetchTail-' 'bytes/line')
# The daemon's relay: 4 in flight, zstd to a finelogd; the baseline pushes
# the same rows zstd-compressed from 4 pushers (with gzip, as the finelog
# client sends them, beside it).
drain=$(metric 'RelayDrain/in-flight=4-' 'rows/s')
direct=$(metric 'DirectIngest/pushers=4/zstd' 'rows/s')
direct_gz=$(metric 'DirectIngest/pushers=4-' 'rows/s')
# CPU of both ends per million rows: what bounds the drain on a shared
# machine, and steadier than rows/s while other work runs.
drain_cpu=$(metric 'RelayDrain/in-flight=4-' 'cpu-s/Mrows')
direct_cpu=$(metric 'DirectIngest/pushers=4/zstd' 'cpu-s/Mrows')
wire_ms=$(metric 'FetchTailWire/accept=gzip-[0-9]' 'wire-ms/op')
inproc_ms=$(metric 'FetchTailWire/accept=gzip-[0-9]' 'inproc-ms/op')
over_ms=$(metric 'FetchTailWire/accept=gzip-[0-9]' 'overhead-ms/op')
cold=$(metric 'AdmitJWTCold' 'ns/op')
cached=$(metric 'AdmitJWT-' 'ns/op')
floor=$(metric 'HS256VerifyFloor' 'ns/op')

echo
echo "== issue 17 figures, $(date -u +%FT%TZ), $(nproc) cores, ingest run of $lines lines =="
printf '%-44s %-22s %-16s %-30s %s\n' "what" "measured" "target" "baseline (this run)" "ratio"
row() { printf '%-44s %-22s %-16s %-30s %s\n' "$@"; }
row "tail 1000 rows over the wire (gzip client)" "$(or_dash "$wire_ms") ms" "<= 3 ms" "in-process $(or_dash "$inproc_ms") ms" "overhead $(or_dash "$over_ms") ms (<= 1.5)"
row "durable append, batch 1000, 4 writers" "$(or_dash "$ad_mbs") MB/s" ">= 0.5x" "dd conv=fdatasync $fdatasync_mbs MB/s" "$(ratio "$ad_mbs" "$fdatasync_mbs")"
row "" "" "" "dd bs=1M oflag=dsync $dsync_mbs MB/s" "$(ratio "$ad_mbs" "$dsync_mbs")"
row "single-row appends, 64 writers" "$(or_dash "$one_rate") rows/s" ">= 40x" "dd dsync $fsync_rate fsyncs/s" "$(ratio "$one_rate" "$fsync_rate")"
row "daemon disk bytes per line (settled, WAL of the last memtable included)" "$(or_dash "$fl_disk") B" "-" "store bench $(or_dash "$store_bpl") B" "$(ratio "$fl_disk" "$store_bpl")"
row "daemon disk bytes per line (at rest: stopped, last memtable flushed)" "$(or_dash "$fl_rest") B" "<= 30" "store bench $(or_dash "$store_bpl") B" "$(ratio "$fl_rest" "$store_bpl")"
row "server CPU per 1M lines" "$(or_dash "$fl_cpu") s" "<= 2.5 s" "-" "-"
row "server peak RSS" "$(or_dash "$fl_rss") MiB" "<= 256 MiB" "-" "-"
row "wire ingest" "$(or_dash "$fl_rate") lines/s" ">= 3x VL" "VictoriaLogs $(or_dash "$vl_rate") lines/s" "$(ratio "$fl_rate" "$vl_rate")"
row "relay drain (4 in flight)" "$(or_dash "$drain") rows/s" ">= 0.9x" "direct, 4 zstd pushers $(or_dash "$direct") rows/s" "$(ratio "$drain" "$direct")"
row "" "" "" "direct, 4 gzip pushers $(or_dash "$direct_gz") rows/s" "$(ratio "$drain" "$direct_gz")"
row "" "$(or_dash "$drain_cpu") CPU-s/M rows" "" "direct, 4 zstd: $(or_dash "$direct_cpu") CPU-s/M" "$(ratio "$direct_cpu" "$drain_cpu") (direct / relay CPU)"
row "first-seen JWT verify" "$(or_dash "$cold") ns" "<= 3000 ns" "cached $(or_dash "$cached") ns, HMAC $(or_dash "$floor") ns" "$(ratio "$cold" "$cached") of cached"

if [ "$sus_lines" -gt 0 ]; then
	# sus FILE FIELD-REGEXP N: the Nth number on FILE's first line matching.
	sus() { awk -v re="$2" -v n="$3" '$0 ~ re { c = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/ && ++c == n) { print $i; exit } }' "$1"; }
	# sus_ms FILE LINE-REGEXP LABEL: the Go duration after LABEL, in ms.
	sus_ms() {
		awk -v re="$2" -v label="$3" '$0 ~ re { for (i = 1; i < NF; i++) if ($i == label) { d = $(i + 1)
			if (d ~ /ms$/) v = d + 0; else if (d ~ /µs$/) v = d / 1000; else if (d ~ /ns$/) v = d / 1e6; else if (d ~ /s$/) v = d * 1000
			printf "%.1f", v; exit } }' "$1"
	}
	short="$work/sustained-$base_lines.out" long="$work/sustained-$sus_lines.out"
	s_rate=$(sus "$short" '^throughput' 1) l_rate=$(sus "$long" '^throughput' 1)
	s_cpu=$(sus "$short" '^server CPU' 2) l_cpu=$(sus "$long" '^server CPU' 2)
	s_rss=$(sus "$short" '^server RSS' 1) l_rss=$(sus "$long" '^server RSS' 1)
	s_disk=$(sus "$short" '^disk ' 1) l_disk=$(sus "$long" '^disk ' 1)
	l_wamp=$(awk '/^write amp +once settled/ { for (i = 1; i <= NF; i++) if ($i == "=") { print $(i + 1); exit } }' "$long" | tr -d ',')
	l_wseg=$(awk '/^write amp +once settled/ { for (i = 1; i <= NF; i++) if ($i == "the" && $(i - 1) ~ /x$/) { print $(i - 1); exit } }' "$long")
	echo
	echo "== sustained: $sus_lines lines beside $base_lines, a reader tailing one key every 200 ms (tail p99 <= 10 ms) =="
	row "throughput" "$(or_dash "$l_rate") lines/s" ">= 0.8x" "$base_lines lines $(or_dash "$s_rate") lines/s" "$(ratio "$l_rate" "$s_rate")"
	row "server CPU per 1M lines" "$(or_dash "$l_cpu") s" "<= 2.5 s" "$base_lines lines $(or_dash "$s_cpu") s" "-"
	row "push latency p50 / p99 / max" "$(or_dash "$(sus_ms "$long" '^push latency' p50)") / $(or_dash "$(sus_ms "$long" '^push latency' p99)") / $(or_dash "$(sus_ms "$long" '^push latency' max)") ms" "-" \
		"$base_lines: $(or_dash "$(sus_ms "$short" '^push latency' p99)") ms p99" "-"
	row "tail latency p50 / p99 / max" "$(or_dash "$(sus_ms "$long" '^tail latency' p50)") / $(or_dash "$(sus_ms "$long" '^tail latency' p99)") / $(or_dash "$(sus_ms "$long" '^tail latency' max)") ms" "p99 <= 10 ms" \
		"$base_lines: $(or_dash "$(sus_ms "$short" '^tail latency' p99)") ms p99" "-"
	row "server peak RSS" "$(or_dash "$l_rss") MiB" "<= 256 MiB" "$base_lines lines $(or_dash "$s_rss") MiB" "-"
	row "disk bytes per line (settled)" "$(or_dash "$l_disk") B" "-" "$base_lines lines $(or_dash "$s_disk") B" "-"
	row "write amplification (settled)" "$(or_dash "$l_wamp") of row bytes" "reported" "$(or_dash "$l_wseg") of segment bytes held" "-"
fi
