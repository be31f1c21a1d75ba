package peer

import (
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats counts what the peer port does, for /metrics. A nil *Stats counts
// nothing. Create one per process with NewStats.
type Stats struct {
	log        *slog.Logger
	handshakes *prometheus.CounterVec
	tagFails   prometheus.Counter
	protoErrs  prometheus.Counter
	frames     *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	segments   *prometheus.CounterVec
}

// NewStats registers the peer metrics on reg (nil: counted but not
// exported) and logs security events on log.
func NewStats(reg prometheus.Registerer, log *slog.Logger) *Stats {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stats{
		log: log,
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finelog_peer_handshakes_total",
			Help: "Peer handshakes by result: ok, a reject status (unsupported_version, cluster_mismatch, busy, refused), bad_mac, timeout or protocol_error.",
		}, []string{"role", "result"}),
		tagFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_peer_tag_failures_total",
			Help: "Peer frames whose tag did not verify (injected, replayed, reordered or corrupted); each closed its connection.",
		}),
		protoErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_peer_protocol_errors_total",
			Help: "Peer connections closed for a malformed, oversized, truncated or unexpected frame after the handshake.",
		}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finelog_peer_frames_total",
			Help: "Tagged peer frames by direction (sent, received).",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finelog_peer_bytes_total",
			Help: "Bytes of tagged peer frames by direction (sent, received), length field included.",
		}, []string{"direction"}),
		segments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finelog_replica_segments_total",
			Help: "Sealed segment files shipped on the replica port: on a primary sent, skipped (gone before it was sent); on a replica adopted, or why one was dropped (not_held, overlap, below_floor, already_held, not_following).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(s.handshakes, s.tagFails, s.protoErrs, s.frames, s.bytes, s.segments)
	}
	return s
}

func (s *Stats) handshake(role Role, result string) {
	if s != nil {
		s.handshakes.WithLabelValues(role.String(), result).Inc()
	}
}

func (s *Stats) tagFailure(remote net.Addr) {
	if s == nil {
		return
	}
	s.tagFails.Inc()
	// The frame's bytes are never logged: they may be a forged payload.
	s.log.Warn("peer frame failed its tag check: closing the connection (traffic injected, replayed, reordered or corrupted on the way)", "remote", addrString(remote))
}

func (s *Stats) protocolError() {
	if s != nil {
		s.protoErrs.Inc()
	}
}

func (s *Stats) sent(n int) {
	if s != nil {
		s.frames.WithLabelValues("sent").Inc()
		s.bytes.WithLabelValues("sent").Add(float64(n))
	}
}

func (s *Stats) received(n int) {
	if s != nil {
		s.frames.WithLabelValues("received").Inc()
		s.bytes.WithLabelValues("received").Add(float64(n))
	}
}

func (s *Stats) segment(result string) {
	if s != nil {
		s.segments.WithLabelValues(result).Inc()
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
