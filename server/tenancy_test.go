package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/vfs"
)

// tenants is a server whose policy has jwt keys east and west (extra is
// added to each key object, e.g. `,"read":["own"]`) and, after them, a
// loopback cidr layer.
type tenants struct {
	*testEnv
	east, west *client.Client
	anon       *client.Client // loopback, no token: admitted by the cidr layer
}

func newTenants(t *testing.T, eastExtra, westExtra string, mod func(*Config)) *tenants {
	t.Helper()
	secrets := map[string]auth.Secret{
		"east": auth.Secret(bytes.Repeat([]byte("e"), 40)),
		"west": auth.Secret(bytes.Repeat([]byte("w"), 40)),
	}
	e := newTestServer(t, func(c *Config) {
		c.AuthPolicy = `[{"type":"jwt","keys":[{"cluster":"east","secret_file":"/keys/east"` + eastExtra + `},` +
			`{"cluster":"west","secret_file":"/keys/west"` + westExtra + `}]},{"type":"cidr","cidrs":["127.0.0.1","::1"]}]`
		fs := c.FS.(*vfs.MemFS)
		if err := fs.MkdirAll("/keys"); err != nil {
			t.Fatal(err)
		}
		for name, s := range secrets {
			if err := vfs.WriteFileAtomic(fs, "/keys/"+name, s); err != nil {
				t.Fatal(err)
			}
		}
		if mod != nil {
			mod(c)
		}
	})
	as := func(cluster string) *client.Client {
		m := auth.NewMinter(secrets[cluster], cluster, "", time.Hour, e.clk)
		return client.New(e.http.URL, client.WithRetry(1, 0, 0), client.WithToken(func(context.Context) (string, error) { return m.Token() }))
	}
	return &tenants{testEnv: e, east: as("east"), west: as("west"), anon: e.c}
}

// The poisoning attack: west pushes an empty producer batch naming east's
// relay producer far ahead, which would make the store drop every later
// batch of east's relay as already applied. It is refused, and east's own
// batches are stored.
func TestProducerPoisoningAcrossIdentitiesRefused(t *testing.T) {
	tn := newTenants(t, "", "", nil)
	ctx := context.Background()
	const eastProducer = "east/0123456789abcdef"
	poison := &loggingpb.PushLogsRequest{Producer: eastProducer, FirstSeq: 2, LastSeq: 1_000_000}
	for name, c := range map[string]*client.Client{"west token": tn.west, "loopback without token": tn.anon} {
		_, err := c.Push(ctx, poison)
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s advancing east's producer: %v, want permission_denied", name, err)
		}
		if _, _, err := c.ProducerState(ctx, eastProducer); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s asking about east's producer: %v, want permission_denied", name, err)
		}
	}
	resp, err := tn.east.Push(ctx, &loggingpb.PushLogsRequest{Producer: eastProducer, FirstSeq: 1, LastSeq: 2,
		Entries: []*loggingpb.LogEntry{{Key: "/east/job", Data: "one", Seq: 1}, {Key: "/east/job", Data: "two", Seq: 2}}})
	if err != nil || resp.ProducerAppliedSeq != 2 || resp.LastSeq-resp.FirstSeq != 1 {
		t.Fatalf("east's own relay batch after the attack: %v %v, want 2 rows stored, applied 2", resp, err)
	}
	applied, known, err := tn.east.ProducerState(ctx, eastProducer)
	if err != nil || !known || applied != 2 {
		t.Fatalf("east asking about its producer: %d %v %v, want 2 known", applied, known, err)
	}
	// West keeps its own namespace; a cidr writer one no key owns.
	if _, err := tn.west.Push(ctx, &loggingpb.PushLogsRequest{Producer: "west/aa", FirstSeq: 1, LastSeq: 1,
		Entries: []*loggingpb.LogEntry{{Key: "/w", Data: "w", Seq: 1}}}); err != nil {
		t.Fatalf("west using its own producer: %v", err)
	}
	if _, err := tn.west.Push(ctx, &loggingpb.PushLogsRequest{Producer: "nonamespace", FirstSeq: 1, LastSeq: 1,
		Entries: []*loggingpb.LogEntry{{Key: "/w", Data: "w", Seq: 1}}}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("west using a producer outside west/: %v, want permission_denied", err)
	}
	if _, err := tn.anon.Push(ctx, &loggingpb.PushLogsRequest{Producer: "local/1", FirstSeq: 1, LastSeq: 1,
		Entries: []*loggingpb.LogEntry{{Key: "/l", Data: "l", Seq: 1}}}); err != nil {
		t.Fatalf("cidr writer using a producer no key owns: %v", err)
	}
}

func TestProducerLimitsPerIdentity(t *testing.T) {
	tn := newTenants(t, "", "", func(c *Config) { c.MaxProducersPerIdentity = 3 })
	ctx := context.Background()
	push := func(c *client.Client, producer string) error {
		_, err := c.Push(ctx, &loggingpb.PushLogsRequest{Producer: producer, FirstSeq: 1, LastSeq: 1,
			Entries: []*loggingpb.LogEntry{{Key: "/p", Data: "x", Seq: 1}}})
		return err
	}
	long := "east/" + strings.Repeat("x", MaxProducerBytes)
	if err := push(tn.east, long); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), fmt.Sprint(MaxProducerBytes)) {
		t.Fatalf("producer id of %d bytes: %v, want invalid_argument naming the %d-byte limit", len(long), err, MaxProducerBytes)
	}
	for i := range 3 {
		if err := push(tn.east, fmt.Sprintf("east/%d", i)); err != nil {
			t.Fatalf("producer %d of 3: %v", i, err)
		}
	}
	err := push(tn.east, "east/3")
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "--max-producers-per-identity") || client.Retryable(err) {
		t.Fatalf("a 4th producer: %v, want a non-retryable resource_exhausted naming --max-producers-per-identity", err)
	}
	if err := push(tn.east, "east/1"); err != nil {
		t.Fatalf("a producer already in use stays usable: %v", err)
	}
	if err := push(tn.west, "west/0"); err != nil {
		t.Fatalf("another identity is not limited by east's producers: %v", err)
	}
	tn.clk.Advance(producerIdle + time.Minute)
	if err := push(tn.east, "east/3"); err != nil {
		t.Fatalf("after the others were idle for %v: %v", producerIdle, err)
	}
}

// A writer without a jwt identity names its rows' cluster; it is checked
// like a key label instead of being stored verbatim.
func TestCIDRWriterClusterLabelValidated(t *testing.T) {
	tn := newTenants(t, "", "", nil)
	ctx := context.Background()
	for _, bad := range []string{"a\x00b", "line\nbreak", strings.Repeat("c", 100<<10), "sp ace"} {
		_, err := tn.anon.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Cluster: bad, Entries: []*loggingpb.LogEntry{entry("x")}})
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "cluster") {
			t.Errorf("cluster %.20q: %v, want invalid_argument about the cluster", bad, err)
		}
	}
	if _, err := tn.anon.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Cluster: "edge-1.eu", Entries: []*loggingpb.LogEntry{entry("x")}}); err != nil {
		t.Fatalf("valid cluster label: %v", err)
	}
}

// Read scopes: a key with "read": ["own"] reads only its cluster's rows;
// a key without "read" reads every cluster (the behaviour before scopes).
func TestReadScopes(t *testing.T) {
	tn := newTenants(t, `,"read":["own"]`, "", nil)
	ctx := context.Background()
	for _, c := range []*client.Client{tn.east, tn.west} {
		if _, err := c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/shared", Entries: []*loggingpb.LogEntry{entry("row")}}); err != nil {
			t.Fatal(err)
		}
	}
	fetch := func(c *client.Client, cluster string) ([]string, error) {
		resp, err := c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/shared", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, Cluster: cluster})
		var got []string
		for _, e := range resp.GetEntries() {
			got = append(got, e.Cluster)
		}
		return got, err
	}
	if got, err := fetch(tn.east, ""); err != nil || strings.Join(got, ",") != "east" {
		t.Errorf("east (read own) without cluster: %v %v, want only east's row", got, err)
	}
	if _, err := fetch(tn.east, "west"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("east (read own) asking for west: %v, want permission_denied", err)
	}
	if got, err := fetch(tn.west, ""); err != nil || strings.Join(got, ",") != "east,west" {
		t.Errorf("west (no read scope) reads every cluster: %v %v", got, err)
	}
}

// /metrics and /debug/* need an admin identity: a jwt key with "admin":
// true, or the cidr layer (admin unless it says otherwise).
func TestAdminRoutes(t *testing.T) {
	tn := newTenants(t, `,"admin":true`, "", nil)
	get := func(c *client.Client, token bool, path string) int {
		req, _ := http.NewRequest("GET", tn.http.URL+path, nil)
		if token {
			tok, err := auth.Mint(auth.Secret(bytes.Repeat([]byte(map[*client.Client]string{tn.east: "e", tn.west: "w"}[c]), 40)),
				map[*client.Client]string{tn.east: "east", tn.west: "west"}[c], time.Hour, "", tn.clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline"} {
		if code := get(tn.west, true, path); code != http.StatusForbidden {
			t.Errorf("%s as west (not admin): %d, want 403", path, code)
		}
		if code := get(tn.east, true, path); code != http.StatusOK {
			t.Errorf("%s as east (admin): %d, want 200", path, code)
		}
		if code := get(nil, false, path); code != http.StatusOK {
			t.Errorf("%s from loopback (cidr layer): %d, want 200", path, code)
		}
	}
	if code := get(tn.east, true, fmt.Sprintf("/debug/pprof/profile?seconds=%d", MaxProfileSeconds+1)); code != http.StatusBadRequest {
		t.Errorf("profile longer than %ds: %d, want 400", MaxProfileSeconds, code)
	}
}
