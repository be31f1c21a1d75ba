package store

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// A segment is plain parquet that DuckDB reads, attributes included:
// scripts/duckdb-check.sh queries it through the @duckdb/node-api npm
// package. Outside CI it skips when node or npm is missing; in CI (CI=true)
// that is a failure, as is any install or query error.
func TestDuckDBReadsSegmentAttributes(t *testing.T) {
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("-short: skipping the DuckDB read (it installs an npm package on first use)")
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed: CI must install it (.ci/run) so a segment is read with DuckDB", tool)
			}
			t.Skipf("%s is not installed: skipping the DuckDB read of a segment", tool)
		}
	}
	dir := t.TempDir()
	s := mustOpen(t, Options{FS: vfs.OS{}, Dir: dir, Clock: memOpts(nil).Clock})
	rows := attrRows(t, 30)
	mustAppend(t, s, rows)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.parquet"))
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	sql := "select seq, data, attributes['env'] as env, attributes['trace_id'] as trace, cardinality(attributes) as n from read_parquet('" +
		strings.ReplaceAll(segs[0], "'", "''") + "') order by seq"
	cmd := exec.Command("bash", "../scripts/duckdb-check.sh", sql)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("duckdb-check.sh: %v\n%s", err, stderr.String())
	}
	var got []struct {
		Seq   json.Number `json:"seq"`
		Data  string      `json:"data"`
		Env   *string     `json:"env"`
		Trace *string     `json:"trace"`
		N     json.Number `json:"n"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("duckdb output %q: %v", out, err)
	}
	if len(got) != len(rows) {
		t.Fatalf("DuckDB read %d rows, want %d", len(got), len(rows))
	}
	for i, g := range got {
		r := rows[i]
		env, hasEnv := r.Attributes.Get("env")
		trace, hasTrace := r.Attributes.Get("trace_id")
		if g.Data != r.Data || g.N.String() != json.Number(itoa(r.Attributes.Len())).String() ||
			(g.Env != nil) != hasEnv || (hasEnv && *g.Env != env) || (g.Trace != nil) != hasTrace || (hasTrace && *g.Trace != trace) {
			t.Fatalf("DuckDB row %d = %+v, want data %q attributes %v", i, g, r.Data, r.Attributes.Map())
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
