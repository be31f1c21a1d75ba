// Package loggen generates realistic log lines for benchmarks: ~150 bytes,
// a timestamp, a level, a component, the task, a message template and random
// ids and numbers, keyed /user/job-N/task-M. It is deterministic for a seed
// so benchmark stores can be rebuilt identically.
package loggen

import (
	"fmt"
	"math/rand"
	"strconv"
	"time"
)

// Levels use the wire LogLevel numbers.
const (
	levelDebug   = 1
	levelInfo    = 2
	levelWarning = 3
	levelError   = 4
)

// Line is one generated log line.
type Line struct {
	Key     string
	Data    string
	EpochMS int64
	Level   int32
}

// Gen produces lines. Not safe for concurrent use; make one per goroutine.
type Gen struct {
	rng  *rand.Rand
	now  time.Time
	keys []string
	buf  []byte
}

// New returns a generator over nKeys keys (/user/job-N/task-M with 8 tasks
// per job) whose clock starts at start.
func New(seed int64, start time.Time, nKeys int) *Gen {
	g := &Gen{rng: rand.New(rand.NewSource(seed)), now: start}
	for i := 0; i < nKeys; i++ {
		g.keys = append(g.keys, Key(i))
	}
	return g
}

// Key is the i-th key: /user/job-<i/8>/task-<i%8>.
func Key(i int) string { return fmt.Sprintf("/user/job-%d/task-%d", i/8, i%8) }

// Keys returns the generator's keys.
func (g *Gen) Keys() []string { return g.keys }

var (
	components = []string{"svc.api.http", "svc.api.grpc", "train.loop", "data.loader", "ckpt.writer", "sched.worker"}
	methods    = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	paths      = []string{"/api/v1/users/", "/api/v1/jobs/", "/api/v1/datasets/", "/api/v1/metrics/", "/api/v2/runs/"}
	statuses   = []int{200, 200, 200, 200, 201, 204, 304, 400, 404, 500}
)

// Next returns a line for a random key.
func (g *Gen) Next() Line { return g.NextFor(g.keys[g.rng.Intn(len(g.keys))]) }

// Push returns the lines of one PushLogs request: one key (PushLogs carries
// a single key per request) and 1..maxLines lines, the shape a store sees
// from real tasks, which log in bursts.
func (g *Gen) Push(maxLines int) []Line {
	key := g.keys[g.rng.Intn(len(g.keys))]
	lines := make([]Line, 1+g.rng.Intn(maxLines))
	for i := range lines {
		lines[i] = g.NextFor(key)
	}
	return lines
}

// NextFor returns a line for key.
func (g *Gen) NextFor(key string) Line {
	g.now = g.now.Add(time.Duration(g.rng.Intn(2000)) * time.Microsecond)
	r := g.rng
	level := int32(levelInfo)
	switch p := r.Intn(100); {
	case p < 10:
		level = levelDebug
	case p < 95:
		level = levelInfo
	case p < 99:
		level = levelWarning
	default:
		level = levelError
	}
	lv := map[int32]string{levelDebug: "DEBUG", levelInfo: "INFO ", levelWarning: "WARN ", levelError: "ERROR"}[level]
	b := g.buf[:0]
	b = g.now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	b = append(b, ' ')
	b = append(b, lv...)
	b = append(b, ' ')
	comp := components[r.Intn(len(components))]
	b = append(b, comp...)
	b = append(b, " ["...)
	b = append(b, key[len("/user/"):]...)
	b = append(b, "] "...)
	switch comp {
	case "train.loop":
		b = fmt.Appendf(b, "step=%d loss=%.4f lr=%.1e tokens_per_s=%d grad_norm=%.3f mem_gb=%.1f",
			r.Intn(200000), r.Float64()*4, 3e-4*r.Float64(), 10000+r.Intn(90000), r.Float64()*10, 10+r.Float64()*70)
	case "data.loader":
		b = fmt.Appendf(b, "batch loaded shard=%05d/%05d rows=%d bytes=%d wait_ms=%.3f",
			r.Intn(4096), 4096, 512+r.Intn(4096), r.Intn(1<<24), r.Float64()*50)
	case "ckpt.writer":
		b = fmt.Appendf(b, "checkpoint saved path=/ckpt/%s/step-%d size_mb=%d took_s=%.2f",
			key[len("/user/"):], r.Intn(200000), 100+r.Intn(20000), r.Float64()*60)
	default:
		b = append(b, "request completed method="...)
		b = append(b, methods[r.Intn(len(methods))]...)
		b = append(b, " path="...)
		b = append(b, paths[r.Intn(len(paths))]...)
		b = strconv.AppendInt(b, int64(r.Intn(100000)), 10)
		b = fmt.Appendf(b, " status=%d dur_ms=%.3f bytes=%d req_id=%016x",
			statuses[r.Intn(len(statuses))], r.ExpFloat64()*20, r.Intn(65536), r.Uint64())
	}
	g.buf = b
	return Line{Key: key, Data: string(b), EpochMS: g.now.UnixMilli(), Level: level}
}
