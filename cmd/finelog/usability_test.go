package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/server"
	"github.com/finelog/finelog/wire"
)

func TestPushReplacesInvalidUTF8AndKeepsTheBatch(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	code, _, errs := cli(t, ctx, addr, "good one\nbad \xff byte\ngood two\n", "push", "/u/utf8")
	if code != 0 {
		t.Fatalf("push with an invalid byte: exit %d: %s", code, errs)
	}
	if strings.Count(errs, "warning") != 1 || !strings.Contains(errs, "1 lines had invalid UTF-8") {
		t.Errorf("stderr should warn once and count: %q", errs)
	}
	_, out, _ := cli(t, ctx, addr, "", "fetch", "/u/utf8")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[1], "bad \uFFFD byte") {
		t.Fatalf("stored:\n%s\nwant all three lines, the invalid byte as U+FFFD", out)
	}
	code, _, errs = cli(t, ctx, addr, "x\n", "push", "/u/\xffkey")
	if code != 1 || !strings.Contains(errs, "not valid UTF-8") {
		t.Fatalf("invalid UTF-8 key: exit %d %q, want a clear refusal", code, errs)
	}
}

func TestPushLongLineSplitsAndKeepsGoing(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	long := strings.Repeat("é", wire.MaxRowBytes) // 2 MiB: two-byte runes, so a cut must respect them
	in := "before\n" + long + "\nafter\n"
	code, _, errs := cli(t, ctx, addr, in, "push", "/u/long")
	if code != 0 {
		t.Fatalf("push with a 2 MiB line: exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "1 lines longer than") || !strings.Contains(errs, "split") {
		t.Errorf("stderr %q: want the split counted", errs)
	}
	_, out, _ := cli(t, ctx, addr, "", "fetch", "--json", "--max", "100", "/u/long")
	var datas []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e jsonEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		datas = append(datas, e.Data)
	}
	if len(datas) < 4 || datas[0] != "before" || datas[len(datas)-1] != "after" {
		t.Fatalf("got %d rows; want before, the pieces, after", len(datas))
	}
	var joined strings.Builder
	for i, d := range datas[1 : len(datas)-1] {
		if i > 0 {
			d = strings.TrimPrefix(d, splitMark)
		}
		joined.WriteString(strings.TrimSuffix(d, splitMark))
	}
	if joined.String() != long {
		t.Fatalf("pieces do not join back into the line (%d bytes, want %d)", joined.Len(), len(long))
	}

	// Truncate: the line is cut, later lines still arrive, and the exit
	// code says data was dropped.
	code, _, errs = cli(t, ctx, addr, in, "push", "--long-lines", "truncate", "/u/trunc")
	if code != 1 || !strings.Contains(errs, "1 lines longer than") || !strings.Contains(errs, "truncated") {
		t.Fatalf("truncate: exit %d %q, want exit 1 naming the truncated line", code, errs)
	}
	_, out, _ = cli(t, ctx, addr, "", "fetch", "/u/trunc")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasSuffix(lines[1], truncMark) || !strings.HasSuffix(lines[2], "after") {
		t.Fatalf("truncate stored %d lines, want before, the cut line, after", len(lines))
	}
	code, _, errs = cli(t, ctx, addr, "x\n", "push", "--long-lines", "wrap", "/u/x")
	if code != 1 || !strings.Contains(errs, "want split or truncate") {
		t.Fatalf("bad --long-lines: exit %d %q", code, errs)
	}
}

func TestLineReaderPieces(t *testing.T) {
	for _, tc := range []struct {
		in, mode string
		want     []string
	}{
		{"a\nb", longSplit, []string{"a", "b"}},
		{"a\r\n\nb\n", longSplit, []string{"a", "", "b"}},
		{strings.Repeat("x", 150) + "\nz\n", longSplit, []string{strings.Repeat("x", 64) + "…", "…" + strings.Repeat("x", 64) + "…", "…" + strings.Repeat("x", 22), "z"}},
		{strings.Repeat("x", 150) + "\nz", longTruncate, []string{strings.Repeat("x", 64) + truncMark, "z"}},
		{"", longSplit, nil},
	} {
		lr, err := newLineReader(strings.NewReader(tc.in), 64+2*len(splitMark), tc.mode)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			p, err := lr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, p)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s %q: pieces %q, want %q", tc.mode, tc.in, got, tc.want)
		}
	}
}

func TestLevelAliases(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	for _, lv := range []string{"debug", "info", "warning", "error", "critical"} {
		if code, _, errs := cli(t, ctx, addr, lv+"\n", "push", "--level", lv, "/u/lv"); code != 0 {
			t.Fatal(errs)
		}
	}
	for _, tc := range []struct {
		level string
		want  int
	}{{"warn", 3}, {"err", 2}, {"crit", 1}, {"fatal", 1}, {"trace", 5}, {"WARN", 3}} {
		_, out, errs := cli(t, ctx, addr, "", "fetch", "--level", tc.level, "/u/lv")
		if n := strings.Count(out, "\n"); n != tc.want {
			t.Errorf("fetch --level %s printed %d lines, want %d (%s)", tc.level, n, tc.want, errs)
		}
	}
	code, _, errs := cli(t, ctx, addr, "", "fetch", "--level", "loud", "/u/lv")
	if code != 1 || !strings.Contains(errs, "invalid_argument") || !strings.Contains(errs, "warn") {
		t.Fatalf("unknown level: exit %d %q, want invalid_argument listing the names", code, errs)
	}
}

func TestFetchSaysWhenRowsAreLeftOut(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	var in strings.Builder
	for i := range 25 {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	cli(t, ctx, addr, in.String(), "push", "/bench/k")
	code, out, errs := cli(t, ctx, addr, "", "fetch", "--prefix", "/bench/", "--max", "10")
	if code != 0 || strings.Count(out, "\n") != 10 || !strings.Contains(errs, "more rows: use --max N or --all") {
		t.Fatalf("--max 10 of 25: exit %d, %d lines, stderr %q", code, strings.Count(out, "\n"), errs)
	}
	_, out, errs = cli(t, ctx, addr, "", "fetch", "--prefix", "/bench/", "--max", "25")
	if strings.Count(out, "\n") != 25 || errs != "" {
		t.Fatalf("--max 25 of 25: %d lines, stderr %q (want no hint: nothing left)", strings.Count(out, "\n"), errs)
	}
	_, _, errs = cli(t, ctx, addr, "", "fetch", "--tail", "--max", "5", "/bench/k")
	if !strings.Contains(errs, "more rows") {
		t.Fatalf("--tail --max 5 of 25: stderr %q, want the hint", errs)
	}
	_, out, errs = cli(t, ctx, addr, "", "fetch", "--prefix", "/bench/", "--all")
	if strings.Count(out, "\n") != 25 || errs != "" {
		t.Fatalf("--all: %d lines, stderr %q", strings.Count(out, "\n"), errs)
	}
	_, out, errs = cli(t, ctx, addr, "", "fetch", "/bench/")
	if out != "" || !strings.Contains(errs, `no rows for key "/bench/"; did you mean --prefix?`) {
		t.Fatalf("prefix typed without --prefix: out %q, stderr %q", out, errs)
	}
	_, _, errs = cli(t, ctx, addr, "", "fetch", "/nothing/here")
	if !strings.Contains(errs, `no rows for key "/nothing/here"`) || strings.Contains(errs, "did you mean") {
		t.Fatalf("missing key: stderr %q", errs)
	}
}

func TestSinceUntilForms(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		at   string
		err  string
	}{
		{in: "90s", want: 90 * time.Second},
		{in: "1d", want: 24 * time.Hour},
		{in: "2d12h", want: 60 * time.Hour},
		{in: "0", want: 0},
		{in: "2026-12-01T09:30:00Z", at: "2026-12-01T09:30:00Z"},
		{in: "-1h", err: "is negative"},
		{in: "yesterday", err: "RFC 3339"},
		{in: "1x", err: "1d"},
	} {
		b := timeBound{name: "since"}
		err := b.Set(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "--since") {
				t.Errorf("%q: error %v, want one containing %q and naming --since", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.at != "":
			if got := b.time(time.Now()).Format(time.RFC3339); got != tc.at {
				t.Errorf("%q: time %s", tc.in, got)
			}
		case b.ago != tc.want:
			t.Errorf("%q: %v, want %v", tc.in, b.ago, tc.want)
		}
	}

	addr := testServer(t, server.Config{})
	ctx := context.Background()
	cli(t, ctx, addr, "now\n", "push", "/u/t")
	_, out, _ := cli(t, ctx, addr, "", "fetch", "--since", "1d", "/u/t")
	if !strings.Contains(out, "now") {
		t.Fatalf("--since 1d hides a fresh line: %q", out)
	}
	_, out, _ = cli(t, ctx, addr, "", "fetch", "--until", "1h", "/u/t")
	if out != "" {
		t.Fatalf("--until 1h (an hour ago) shows a fresh line: %q", out)
	}
	_, out, _ = cli(t, ctx, addr, "", "fetch", "--until", time.Now().Add(time.Minute).UTC().Format(time.RFC3339), "/u/t")
	if !strings.Contains(out, "now") {
		t.Fatalf("--until in a minute hides a fresh line: %q", out)
	}
	code, _, errs := cli(t, ctx, addr, "", "fetch", "--since", "-5m", "/u/t")
	if code == 0 || !strings.Contains(errs, "negative") || strings.Contains(errs, "-addr") {
		t.Fatalf("negative --since: exit %d, stderr %q (want the accepted forms, not the whole flag list)", code, errs)
	}
}

func TestHelpGoesToStdoutWithExamples(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"push", "-h"}, {"fetch", "-h"}, {"tail", "-h"}, {"bench", "-h"},
		{"token", "-h"}, {"token", "mint", "-h"}, {"policy", "-h"}, {"policy", "check", "-h"},
	} {
		code, out, errs := cli(t, context.Background(), "http://127.0.0.1:1", "", args...)
		if code != 0 || errs != "" {
			t.Errorf("%q: exit %d, stderr %q; want exit 0, help on stdout", args, code, errs)
			continue
		}
		for _, want := range []string{"example", "FINELOG_ADDR", "FINELOG_TOKEN_FILE", "FINELOG_AUTH_POLICY"} {
			if !strings.Contains(out, want) {
				t.Errorf("%q help lacks %q:\n%s", args, want, out)
			}
		}
		if len(args) > 1 && !strings.Contains(out, "finelog "+strings.Join(args[:len(args)-1], " ")) {
			t.Errorf("%q help lacks its description line:\n%s", args, out)
		}
	}
	code, out, _ := cli(t, context.Background(), "", "", "--version")
	if code != 0 || !strings.HasPrefix(out, "finelog ") || !strings.Contains(out, "revision") {
		t.Fatalf("--version: exit %d %q", code, out)
	}
	if code, _, errs := cli(t, context.Background(), "", "", "token"); code != 1 || !strings.Contains(errs, `"mint"`) {
		t.Fatalf("token without mint: exit %d %q", code, errs)
	}
}

func TestJSONLinesAreStable(t *testing.T) {
	addr := testServer(t, server.Config{Cluster: "home"})
	ctx := context.Background()
	cli(t, ctx, addr, "hello \"world\"\n", "push", "--level", "warn", "--source", "stdout", "/u/j:2")
	_, out, _ := cli(t, ctx, addr, "", "fetch", "--json", "/u/j:2")
	var e jsonEntry
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatal(err)
	}
	ts, err := time.Parse(time.RFC3339, e.Time)
	if err != nil || ts.UnixMilli() != e.EpochMS {
		t.Fatalf("time %q is not RFC 3339 of epoch_ms %d: %v", e.Time, e.EpochMS, err)
	}
	want := fmt.Sprintf(`{"seq":1,"time":%q,"epoch_ms":%d,"level":"WARN","key":"/u/j:2","source":"stdout","data":"hello \"world\"","attempt_id":2,"cluster":"home"}`+"\n", e.Time, e.EpochMS)
	if out != want {
		t.Fatalf("--json line:\n%s\nwant exactly:\n%s", out, want)
	}
	code, out, errs := cli(t, ctx, addr, "a\nb\nc\n", "push", "-v", "--batch-lines", "2", "/u/v")
	if code != 0 || !strings.Contains(out, "pushed 2 lines: seq 2..3") || !strings.Contains(out, "pushed 3 lines in total: seq 2..4") {
		t.Fatalf("push -v: exit %d out %q err %q", code, out, errs)
	}
}

func TestBenchNamesItsPrefixAndWarnsAboutOtherData(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	code, out, errs := cli(t, ctx, addr, "", "bench", "--lines", "50", "--keys", "2", "--batch", "10", "--progress", "1h", "--prefix", "/bench/a/")
	if code != 0 || !strings.Contains(out, "under key prefix /bench/a/") || strings.Contains(errs, "already holds data") {
		t.Fatalf("bench on an empty store: exit %d out %q err %q", code, out, errs)
	}
	_, rows, _ := cli(t, ctx, addr, "", "fetch", "--prefix", "/bench/a/", "--all")
	if n := strings.Count(rows, "\n"); n != 50 {
		t.Fatalf("%d rows under the named prefix, want 50", n)
	}
	_, _, errs = cli(t, ctx, addr, "", "bench", "--lines", "10", "--keys", "1", "--batch", "10", "--progress", "1h")
	if !strings.Contains(errs, "already holds data") || !strings.Contains(errs, "--spawn") {
		t.Fatalf("bench on a store with data: stderr %q, want a warning pointing at --spawn", errs)
	}
	if code, _, errs := cli(t, ctx, addr, "", "bench", "--prefix", "bench"); code != 1 || !strings.Contains(errs, "--prefix") {
		t.Fatalf("bad --prefix: exit %d %q", code, errs)
	}
}

func TestBenchSpawnsAThrowAwayDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds finelogd")
	}
	bin := t.TempDir() + "/finelogd"
	build := exec.Command("go", "build", "-o", bin, "../finelogd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build finelogd: %v\n%s", err, out)
	}
	code, out, errs := cli(t, context.Background(), "http://127.0.0.1:1", "", "bench", "--spawn", "--finelogd", bin,
		"--lines", "2000", "--keys", "4", "--batch", "100", "--progress", "1h")
	if code != 0 {
		t.Fatalf("bench --spawn: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"spawned", "deleted after", "2000 in", "server CPU", "server RSS", "disk at rest"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench --spawn output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(errs, "already holds data") {
		t.Errorf("a spawned daemon is empty, yet: %s", errs)
	}
	var dir string
	for _, l := range strings.Split(out, "\n") {
		if _, rest, ok := strings.Cut(l, "data in "); ok {
			dir, _, _ = strings.Cut(rest, ",")
		}
	}
	if _, err := os.Stat(dir); dir == "" || !os.IsNotExist(err) {
		t.Errorf("spawned data dir %q still exists (%v)", dir, err)
	}
}

func TestTokenMintRefusesAClusterTheKeyIsNot(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	withTokenClock(t, at)
	keyFile := writeAuthFile(t, "east.key", cliTestSecret+"\n")
	westFile := writeAuthFile(t, "west.key", cliTestSecret+"-west-other\n")
	policy := `[{"type":"jwt","keys":[{"cluster":"east","secret_file":"` + keyFile + `"},{"cluster":"west","secret_file":"` + westFile + `"}]}]`
	env := map[string]string{"FINELOG_AUTH_POLICY": policy}

	code, _, errs := authCLI(t, env, "", "token", "mint", "--cluster", "nope", "--secret-file", keyFile)
	if code != 1 || !strings.Contains(errs, `configured for cluster "east"`) {
		t.Fatalf("--cluster nope with east's key: exit %d %q, want a refusal naming east", code, errs)
	}
	code, _, errs = authCLI(t, env, "", "token", "mint", "--cluster", "west", "--secret-file", keyFile)
	if code != 1 || !strings.Contains(errs, `configured for cluster "east"`) {
		t.Fatalf("--cluster west with east's key: exit %d %q", code, errs)
	}
	code, out, errs := authCLI(t, env, "", "token", "mint", "--secret-file", keyFile)
	if code != 0 {
		t.Fatalf("mint without --cluster, policy known: exit %d %q", code, errs)
	}
	p, err := auth.ParsePolicy([]byte(policy), nil, clock.NewFake(at))
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Admit("192.0.2.9:1", http.Header{"Authorization": {"Bearer " + strings.TrimSpace(out)}}); !v.Admitted || v.Identity.Cluster != "east" {
		t.Fatalf("minted token: %+v, want east", v)
	}
	stranger := writeAuthFile(t, "other.key", strings.Repeat("z", 40))
	if code, _, errs := authCLI(t, env, "", "token", "mint", "--secret-file", stranger); code != 1 || !strings.Contains(errs, "does not admit") {
		t.Fatalf("key not in the policy: exit %d %q", code, errs)
	}
	if code, _, errs := authCLI(t, nil, "", "token", "mint", "--secret-file", keyFile); code != 1 || !strings.Contains(errs, "--cluster is required") {
		t.Fatalf("no policy, no --cluster: exit %d %q", code, errs)
	}
}

func TestFetchSaysFiltersExcludedEverything(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	cli(t, ctx, addr, "calm\n", "push", "--level", "info", "/u/f")
	_, out, errs := cli(t, ctx, addr, "", "fetch", "--level", "warn", "/u/f")
	if out != "" || !strings.Contains(errs, `key "/u/f" has rows, but none match the filters`) || strings.Contains(errs, "no rows for key") {
		t.Fatalf("filtered out: out %q, stderr %q", out, errs)
	}
}
