// Package store is finelog's durable log store: a WAL with group commit,
// an in-memory memtable, and immutable parquet segments, with recovery,
// retention and FetchLogs-compatible reads. It touches disk only through
// vfs.FS and time only through clock.Clock.
//
// CONTRACT (fixed by the lead so server/, relay/ and sim/ can be built in
// parallel; the implementation may add to it but must not change it):
//
//	func Open(opts Options) (*Store, error)
//	func (s *Store) Append(ctx context.Context, b Batch) (Ack, error)
//	func (s *Store) Fetch(ctx context.Context, q Query) (Result, error)
//	func (s *Store) Scan(ctx context.Context, after int64, maxRows int, maxBytes int) ([]Row, error)
//	func (s *Store) LastSeq() int64
//	func (s *Store) Changed() <-chan struct{}
//	func (s *Store) ProducerApplied(producer string) (seq int64, known bool)
//	func (s *Store) SetPin(name string, seq int64)
//	func (s *Store) Flush(ctx context.Context) error
//	func (s *Store) Compact(ctx context.Context) error
//	func (s *Store) Retain(ctx context.Context) error
//	func (s *Store) Stats() Stats
//	func (s *Store) Close() error
package store

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// Level values are the wire LogLevel numbers. A value outside the enum is
// stored and returned unchanged.
const (
	LevelUnknown  int32 = 0
	LevelDebug    int32 = 1
	LevelInfo     int32 = 2
	LevelWarning  int32 = 3
	LevelError    int32 = 4
	LevelCritical int32 = 5
)

// Row is one log line.
type Row struct {
	// Seq is dense and assigned by the store at append (first row of a new
	// store is 1). On input to Append it is ignored unless Batch.Producer is
	// set, in which case it is the row's seq in the producer's store.
	Seq       int64
	Key       string
	Source    string
	Data      string
	EpochMS   int64
	AttemptID int32
	Level     int32
	Cluster   string
	// Attributes are the row's labels, in canonical encoding (build them
	// with MakeAttributes or AttributesOf); "" for none.
	Attributes Attributes
}

// Batch is what one Append call writes: one WAL record.
type Batch struct {
	Rows []Row
	// Producer, when set, makes the batch idempotent: each Row.Seq is the
	// producer's seq (strictly increasing), rows at or below the producer's
	// applied high-water mark are dropped, and the new high-water mark
	// (max(LastSeq, last row seq)) is written in the same WAL record as the
	// rows, so rows and mark are durable atomically.
	Producer string
	// FirstSeq/LastSeq are the producer seq range the batch covers (optional;
	// LastSeq lets the mark advance past rows the producer filtered out).
	// With FirstSeq set, a batch of a known producer whose FirstSeq is past
	// its applied mark + 1 is refused with ErrProducerGap: an earlier batch
	// is still on its way, and applying this one first would make the mark
	// jump over it and drop it as a duplicate when it arrives.
	FirstSeq, LastSeq int64
}

// Ack is the result of a durable Append.
type Ack struct {
	// First and Last are the store seqs assigned; both 0 when nothing was
	// appended (empty or fully duplicate batch).
	First, Last int64
	// ProducerApplied is the producer's high-water mark after the append.
	ProducerApplied int64
}

// Scope is how Query.Source matches a key.
type Scope int32

// Scope values are the wire MatchScope numbers.
const (
	ScopeUnspecified Scope = 0 // treated as ScopeRegex
	ScopeExact       Scope = 1
	ScopePrefix      Scope = 2
	ScopeRegex       Scope = 3
)

// Query is a FetchLogs request. See DESIGN.md for the exact semantics.
type Query struct {
	Source  string
	Scope   Scope
	SinceMS int64 // > 0 keeps EpochMS > SinceMS
	Cursor  int64 // exclusive: Seq > Cursor
	// UntilCursor > 0 keeps Seq <= UntilCursor (pages backwards with Tail).
	UntilCursor int64
	// Regex, when set, is an RE2 expression searched in Data (unanchored),
	// within MaxRegexBytes and MaxRegexProgram.
	Regex     string
	Substring string
	MaxLines  int // <= 0 means DefaultMaxLines; capped at MaxMaxLines
	Tail      bool
	MinLevel  string
	Cluster   string // "" = any cluster
	// Attributes keeps rows that carry every one of these pairs with
	// exactly that value ("" = no filter).
	Attributes Attributes
	// MaxExamined is the query's budget: rows (and, for a regex, keys) it
	// may look at before it fails with ErrQueryBudget (0 =
	// DefaultMaxExamined; negative is invalid). A read also stops, with the
	// context's error, within examineEvery rows of its context ending.
	MaxExamined int64
}

// Result is a FetchLogs answer: rows in seq order.
type Result struct {
	Rows []Row
	// Cursor is the max seq returned, or the query cursor when none.
	Cursor int64
	// MaxLines is the limit that was applied.
	MaxLines int
	// Examined is how many rows (and regex keys) the read looked at; also
	// set when it failed with ErrQueryBudget or its context's error.
	Examined int64
}

// Read and write limits. Exceeding one is an error wrapping ErrInvalidArgument
// that names the limit.
const (
	MaxKeyBytes     = 1 << 10
	MaxRowBytes     = 1 << 20
	MaxBatchBytes   = 16 << 20
	DefaultMaxLines = 1000
	MaxMaxLines     = 10000
)

// Errors callers classify on (errors.Is).
var (
	// ErrInvalidArgument: the request is bad; nothing was written.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNoSpace: the disk is full; nothing was acked; reads still work and
	// appends work again once space returns.
	ErrNoSpace = errors.New("disk full")
	// ErrProducerGap: a producer batch starts past the producer's applied
	// mark + 1 (Batch.FirstSeq), so applying it would skip the rows of an
	// earlier batch that has not arrived yet. Nothing was written; the
	// producer retries once its earlier batches are applied. This is what
	// lets a producer keep several batches in flight.
	ErrProducerGap = errors.New("producer batch arrived before an earlier one")
	// ErrClosed: the store is closed or closing.
	ErrClosed = errors.New("store closed")
)

// Options configures Open. Zero values pick the documented defaults.
type Options struct {
	FS    vfs.FS      // required
	Clock clock.Clock // default clock.Real{}
	Dir   string      // required; created if missing

	// MemtableBytes seals the memtable into a segment once it holds this
	// many bytes (default 32 MiB). Bounds resident memory under ingest: up
	// to 3x this is held while flushes catch up.
	MemtableBytes int64
	// FlushInterval seals a non-empty memtable at least this often
	// (default 1 min) so the WAL stays short.
	FlushInterval time.Duration
	// TargetSegmentBytes: compaction merges smaller segments up to this size
	// (default 256 MiB).
	TargetSegmentBytes int64

	// RetentionAge deletes whole segments whose rows were all written to
	// the store longer ago than this, by the store's clock (0 = keep
	// forever). Rows' own timestamps are the client's and can be anything:
	// they neither expire rows early nor keep them forever.
	RetentionAge time.Duration
	// RetentionBytes deletes the oldest segments while segments exceed this
	// (0 = unlimited).
	RetentionBytes int64
	// Pins are pin names held at seq 0 from Open on, until their owner's
	// SetPin moves them: with Background set, retention could otherwise
	// run before the owner (the daemon's relay) has pinned anything.
	Pins []string
	// PinMaxBytes is the hard cap on bytes retention keeps for pins
	// (SetPin); past it pinned rows are deleted anyway and OnPinnedLoss is
	// called. 0 = pins are honoured without a cap.
	PinMaxBytes int64
	// OnPinnedLoss reports a seq range that retention deleted while pinned.
	OnPinnedLoss func(pin string, first, last int64)

	// Following: this store copies a primary (ApplyReplicated, ApplyFloor)
	// until StopFollowing. Retain then deletes no segments and forgets no
	// producers by RetentionAge or RetentionBytes: the floor and the marks
	// are the primary's, and a copy that expired on its own clock or disk
	// size would no longer be exact.
	Following bool

	// ProducerOrderWait is how long an Append whose producer batch overtook
	// an earlier one (ErrProducerGap) waits for that batch to arrive before
	// it is refused; one already inside Append is always waited for.
	// 0 takes DefaultProducerOrderWait when Background is set, else no
	// wait (a caller that steps the store, like the simulation, also
	// drives its clock); < 0: no wait.
	ProducerOrderWait time.Duration

	// Background starts goroutines that call Flush, Compact and Retain.
	// The simulation leaves it false and calls the steps itself.
	Background bool

	Logger     *slog.Logger          // default: discard
	Registerer prometheus.Registerer // nil: no metrics registered
}

// Stats is a point-in-time summary for metrics, health and tests.
type Stats struct {
	LastSeq       int64
	FirstSeq      int64 // oldest seq still stored (0 when empty)
	MemtableRows  int
	MemtableBytes int64
	Segments      int
	SegmentBytes  int64
	SegmentRows   int64
	WALBytes      int64
	Producers     int // idempotent producers remembered (at most MaxProducers)
}
