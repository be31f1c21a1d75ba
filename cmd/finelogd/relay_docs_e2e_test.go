package main

// TestRelayDocsSetup follows docs/relay.md's "Set up a source and a global
// store" step by step, with real processes: the files it shows are written
// as shown, the shell lines it shows are run, and each finelogd it shows is
// started with the flags it shows (on free ports). Change the doc and this
// test runs the new steps.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// docSetup is what the setup section asks for.
type docSetup struct {
	files   map[string]string // name -> content
	shell   []string          // shell lines, in order
	daemons [][]string        // finelogd argument lists, in order
}

func readDocSetup(t *testing.T, ports map[string]string) docSetup {
	t.Helper()
	raw, err := os.ReadFile("../../docs/relay.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := strings.Index(doc, "## Set up a source and a global store")
	if start < 0 {
		t.Fatal("docs/relay.md has no \"Set up a source and a global store\" section")
	}
	doc = doc[start:]
	doc = doc[:strings.Index(doc[3:], "\n## ")+3]
	for from, to := range ports {
		doc = strings.ReplaceAll(doc, from, to)
	}
	setup := docSetup{files: map[string]string{}}
	fileMarker := regexp.MustCompile(`^<!-- file: (\S+) -->$`)
	sc := bufio.NewScanner(strings.NewReader(doc))
	var pending string // "step" or "file:<name>" for the next code block
	for sc.Scan() {
		line := sc.Text()
		if m := fileMarker.FindStringSubmatch(line); m != nil {
			pending = "file:" + m[1]
			continue
		}
		if line == "<!-- step -->" {
			pending = "step"
			continue
		}
		if !strings.HasPrefix(line, "```") || pending == "" {
			continue
		}
		var block []string
		for sc.Scan() && !strings.HasPrefix(sc.Text(), "```") {
			block = append(block, sc.Text())
		}
		if name, ok := strings.CutPrefix(pending, "file:"); ok {
			setup.files[name] = strings.Join(block, "\n") + "\n"
		} else {
			joined := strings.ReplaceAll(strings.Join(block, "\n"), "\\\n", " ")
			for _, l := range strings.Split(joined, "\n") {
				l = strings.TrimSpace(l)
				if args, ok := strings.CutPrefix(l, "finelogd "); ok {
					setup.daemons = append(setup.daemons, strings.Fields(strings.TrimSuffix(args, "&")))
				} else if l != "" {
					setup.shell = append(setup.shell, l)
				}
			}
		}
		pending = ""
	}
	if len(setup.files) != 2 || len(setup.daemons) != 2 || len(setup.shell) == 0 {
		t.Fatalf("docs/relay.md setup: %d files, %d finelogd lines, %d shell lines; want 2, 2 and some", len(setup.files), len(setup.daemons), len(setup.shell))
	}
	return setup
}

func TestRelayDocsSetup(t *testing.T) {
	dir := t.TempDir()
	globalAddr, sourceAddr := freePort(t), freePort(t)
	setup := readDocSetup(t, map[string]string{"127.0.0.1:7080": globalAddr, "127.0.0.1:7070": sourceAddr})
	for _, l := range setup.shell {
		cmd := exec.Command("sh", "-c", l)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("step %q: %v\n%s", l, err, out)
		}
	}
	for name, content := range setup.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var nodes []*relayNode
	for i, args := range setup.daemons {
		addr := ""
		for j := range args {
			if args[j] == "--listen" && j+1 < len(args) {
				addr = args[j+1]
			}
		}
		n := &relayNode{t: t, name: fmt.Sprintf("doc-finelogd-%d", i+1), addr: addr, dir: dir, args: args, stderr: &syncBuffer{}}
		t.Cleanup(func() {
			n.kill()
			if t.Failed() {
				t.Logf("%s stderr:\n%s", n.name, n.stderr.String())
			}
		})
		n.start()
		nodes = append(nodes, n)
	}
	source := nodes[1]

	// Step 6: push on the source, read on the global with a token for
	// the audience the global requires.
	hc := client.HTTP1Client()
	t.Cleanup(hc.CloseIdleConnections)
	push := client.New(source.url(), client.WithHTTPClient(hc))
	if _, err := push.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/job/1", Entries: []*loggingpb.LogEntry{{Data: "hello from east"}}}); err != nil {
		t.Fatal(err)
	}
	secret, err := auth.ReadSecretFile(vfs.OS{}, filepath.Join(dir, "keys/east.key"))
	if err != nil {
		t.Fatal(err)
	}
	minter := auth.NewMinter(secret, "east", "global-store", 10*time.Minute, clock.Real{})
	reader := client.New("http://"+globalAddr, client.WithHTTPClient(hc), client.WithToken(func(context.Context) (string, error) { return minter.Token() }))
	var got []*loggingpb.LogEntry
	waitFor(t, 20*time.Second, "the row at the global store", func() bool {
		resp, err := reader.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Source: "/job/1", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
		if err != nil {
			t.Fatalf("fetch from the global with an audience token: %v", err)
		}
		got = resp.Entries
		return len(got) > 0
	})
	if len(got) != 1 || got[0].Data != "hello from east" || got[0].Cluster != "east" {
		t.Fatalf("global has %v, want the one row from cluster east", got)
	}
	resp, err := http.Get(source.url() + "/health/relay")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var rh struct{ Status string }
	if err := json.Unmarshal(body, &rh); err != nil || resp.StatusCode != http.StatusOK || rh.Status != "ok" {
		t.Fatalf("/health/relay = %d %s, want 200 ok", resp.StatusCode, body)
	}
}
