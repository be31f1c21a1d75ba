package main

import (
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

func noEnv(string) string { return "" }

func TestFlagsMemoryDefaultsAndUnits(t *testing.T) {
	f, err := parseFlags(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f.memoryLimit != DefaultMemoryLimit || f.cfg.MemtableBytes != DefaultMemtableBytes {
		t.Fatalf("defaults: memory limit %d, memtable %d", f.memoryLimit, f.cfg.MemtableBytes)
	}
	f, err = parseFlags([]string{"--memtable-bytes", "64MiB", "--memory-limit", "1GiB", "--max-request-bytes", "4194304", "--retention-bytes", "2TiB"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg.MemtableBytes != 64<<20 || f.memoryLimit != 1<<30 || f.cfg.MaxRequestBytes != 4<<20 || f.cfg.RetentionBytes != 2<<40 {
		t.Fatalf("parsed %+v, memory limit %d", f.cfg, f.memoryLimit)
	}
}

// A memory limit the memtables alone could exceed would make the collector
// run constantly; finelogd refuses it at start and says what to change.
func TestFlagsRefuseMemoryLimitBelowMemtables(t *testing.T) {
	for _, args := range [][]string{
		{"--memory-limit", "100MiB"}, // default 32 MiB memtable: needs 128 MiB
		{"--memtable-bytes", "256MiB"},
	} {
		_, err := parseFlags(args, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--memory-limit") || !strings.Contains(err.Error(), "--memtable-bytes") {
			t.Errorf("%q: err = %v; want a refusal naming both flags", args, err)
		}
	}
	if _, err := parseFlags([]string{"--memtable-bytes", "256MiB", "--memory-limit", "0"}, noEnv, io.Discard); err != nil {
		t.Errorf("--memory-limit 0 (none) refused: %v", err)
	}
	if _, err := parseFlags([]string{"--memtable-bytes", "1000"}, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "at least 1MiB") {
		t.Errorf("tiny memtable: err = %v; want the minimum named", err)
	}
}

func TestFlagsRefuseNegativeRelayCounts(t *testing.T) {
	for _, args := range [][]string{{"--relay-in-flight", "-1"}, {"--relay-batch-rows", "-5"}} {
		if _, err := parseFlags(args, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%q: err = %v; want a refusal naming %s", args, err, args[0])
		}
	}
}

func TestMemoryLimitFlagAndGOMEMLIMIT(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	applyMemoryLimit(300<<20, noEnv, log)
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Fatalf("limit after --memory-limit 300MiB: %d", got)
	}
	debug.SetMemoryLimit(prev)
	applyMemoryLimit(300<<20, func(k string) string {
		if k == "GOMEMLIMIT" {
			return "1GiB"
		}
		return ""
	}, log)
	if got := debug.SetMemoryLimit(-1); got != prev {
		t.Fatalf("GOMEMLIMIT set, but --memory-limit changed the limit to %d", got)
	}
}

func TestFlagsRefuseZeroLimits(t *testing.T) {
	for _, args := range [][]string{
		{"--max-connections", "0"}, {"--max-connections-per-peer", "-1"}, {"--max-long-polls", "0"},
		{"--max-long-polls-per-identity", "0"}, {"--max-reads-per-identity", "0"}, {"--max-producers-per-identity", "0"},
		{"--request-body-timeout", "0s"},
	} {
		_, err := parseFlags(args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v, want an error naming %s", args, err, args[0])
		}
	}
}
