package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/objstore/s3test"
)

// TestE2EObjectStoreVersitygw runs finelogd against a real S3 server:
// push, upload (graceful stop), evict locally, read back from the bucket,
// kill -9, restart with an empty data dir, read back everything, and
// continue the seqs.
func TestE2EObjectStoreVersitygw(t *testing.T) {
	finelogdBinary(t) // skips with -short before starting anything
	g := s3test.Start(t)
	url := "s3://finelog-e2e/east?endpoint=" + g.Endpoint
	loc, _ := objstore.ParseLocation(url)
	creds := objstore.Credentials{AccessKeyID: g.AccessKey, SecretAccessKey: objstore.NewSecret(g.SecretKey)}
	b, err := objstore.OpenS3(loc, creds, objstore.S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.MakeBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	env := []string{"AWS_ACCESS_KEY_ID=" + g.AccessKey, "AWS_SECRET_ACCESS_KEY=" + g.SecretKey}
	ctx := context.Background()

	dir := t.TempDir()
	d := start(t, dir, env, "--object-store", url)
	c := client.New(d.url)
	var want []string
	for batch := 0; batch < 4; batch++ {
		req := &loggingpb.PushLogsRequest{Key: "/tiered"}
		for i := 0; i < 250; i++ {
			req.Entries = append(req.Entries, &loggingpb.LogEntry{Data: fmt.Sprintf("b%d-r%03d", batch, i)})
			want = append(want, fmt.Sprintf("b%d-r%03d", batch, i))
		}
		if _, err := c.Push(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if code := d.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM exit %d\n%s", code, d.stderr.String())
	}
	m, err := objstore.LoadManifest(ctx, b)
	if err != nil || m.HighestSeq() != 1000 {
		t.Fatalf("bucket manifest after a graceful stop: highest seq %d, err %v; want 1000", m.HighestSeq(), err)
	}
	if stderr := d.stderr.String(); strings.Contains(stderr, g.SecretKey) {
		t.Fatal("finelogd logged the secret key")
	}
	// The bucket is a data lake: DuckDB reads the uploaded objects (from
	// the gateway's posix dir) and finds the rows FetchLogs returned.
	if got, ran := duckdbRows(t, filepath.Join(g.Dir, "finelog-e2e", "east", "segments", "*.parquet"), "/tiered"); ran && strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("DuckDB read %d rows of the uploaded objects, FetchLogs %d", len(got), len(want))
	}

	// Evict: every uploaded local copy goes; reads come from the bucket.
	d = start(t, dir, env, "--object-store", url, "--local-retention-bytes", "1", "--object-cache-bytes", "0")
	deadline := time.Now().Add(20 * time.Second)
	for localSegments(t, dir) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("local segments not evicted\n%s", d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkRows(t, client.New(d.url), want, "after local eviction")
	d.signal(syscall.SIGKILL)

	// The disk is lost: a new daemon on an empty data dir.
	d = start(t, t.TempDir(), env, "--object-store", url)
	c = client.New(d.url)
	checkRows(t, c, want, "rebuilt from the bucket alone")
	resp, err := c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/tiered", Entries: []*loggingpb.LogEntry{{Data: "after rebuild"}}})
	if err != nil || resp.FirstSeq != 1001 {
		t.Fatalf("push after rebuild: %v, err %v; want seq 1001", resp, err)
	}
	// The gateway's posix dir holds the objects as plain parquet files.
	objs, _ := filepath.Glob(filepath.Join(g.Dir, "finelog-e2e", "east", "segments", "*.parquet"))
	if len(objs) == 0 {
		t.Fatal("no parquet objects in the gateway's posix dir")
	}
}

func localSegments(t *testing.T, dir string) int {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "store", "seg-*.parquet"))
	return len(names)
}

func checkRows(t *testing.T, c *client.Client, want []string, when string) {
	t.Helper()
	rows := fetchAll(t, c, "/tiered")
	var got []string
	for _, r := range rows {
		got = append(got, r.Data)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s: %d rows, want %d (first difference matters)", when, len(got), len(want))
	}
}

// duckdbModules finds an npm install of @duckdb/node-api: $FINELOG_DUCKDB
// (a directory holding node_modules) or .bin/duckdb in the repository,
// where .ci/run installs it.
func duckdbModules() string {
	if p := os.Getenv("FINELOG_DUCKDB"); p != "" {
		return p
	}
	if p, err := filepath.Abs("../../.bin/duckdb"); err == nil {
		if _, err := os.Stat(filepath.Join(p, "node_modules", "@duckdb", "node-api")); err == nil {
			return p
		}
	}
	return ""
}

// duckdbRows runs DuckDB's read_parquet over glob and returns the data of
// key's rows in seq order, one copy per seq; ran is false when DuckDB is
// not installed (outside CI).
func duckdbRows(t *testing.T, glob, key string) (rows []string, ran bool) {
	t.Helper()
	dir := duckdbModules()
	node, err := exec.LookPath("node")
	if dir == "" || err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("DuckDB (npm @duckdb/node-api in .bin/duckdb) or node not found, and CI=true: .ci/run must install it")
		}
		t.Log("DuckDB check skipped: run npm install --prefix .bin/duckdb @duckdb/node-api@1.5.6-r.1")
		return nil, false
	}
	script := filepath.Join(dir, "finelog-query.mjs")
	js := `import { DuckDBInstance } from '@duckdb/node-api';
const [glob, key] = process.argv.slice(2);
const db = await DuckDBInstance.create(':memory:');
const c = await db.connect();
const r = await c.runAndReadAll("SELECT DISTINCT ON (seq) seq, data FROM read_parquet($1) WHERE key = $2 ORDER BY seq", [glob, key]);
console.log(JSON.stringify(r.getRowObjectsJson().map(x => x.data)));
`
	if err := os.WriteFile(script, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, script, glob, key).CombinedOutput()
	if err != nil {
		t.Fatalf("duckdb: %v\n%s", err, out)
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("duckdb output %q: %v", out, err)
	}
	return rows, true
}
