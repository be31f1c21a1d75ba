package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/finelog/finelog/relay"
)

// relayHealth is the relay part of /health and the body of /health/relay.
// Both routes are open, so it holds nothing an attacker could use: no
// producer id (knowing it is what lets a writer poison the relay's mark).
type relayHealth struct {
	State       string    `json:"state"`
	Target      string    `json:"target"`
	Watermark   int64     `json:"watermark"`
	LagRows     int64     `json:"lag_rows"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	Error       string    `json:"error,omitempty"`
	// Stopped: the relay will not move until an operator acts
	// (relay.State.Stopped: corrupt watermark or seed, store behind the
	// resume point, target is the source, target ahead of the relay).
	Stopped bool `json:"stopped"`
	// Healthy is what /health/relay answers 200 for: not stopped, not
	// auth_failing or target_rejecting, and lag within MaxLagRows.
	Healthy bool `json:"healthy"`
	// MaxLagRows is --relay-health-max-lag-rows (0: lag is not checked).
	MaxLagRows int64 `json:"max_lag_rows,omitempty"`
}

func (s *Server) relayHealth() *relayHealth {
	if s.relay == nil {
		return nil
	}
	st := s.relay.f.Status()
	h := &relayHealth{
		State:       string(st.State),
		Target:      st.Target,
		Watermark:   st.Watermark,
		LagRows:     st.LagRows,
		LastSuccess: st.LastSuccess,
		Error:       st.LastError,
		Stopped:     st.State.Stopped(),
		MaxLagRows:  s.relay.maxLag,
	}
	h.Healthy = st.Healthy() && (h.MaxLagRows == 0 || h.LagRows <= h.MaxLagRows)
	return h
}

// relayHealthBody is the /health/relay body.
type relayHealthBody struct {
	Status string       `json:"status"`
	Relay  *relayHealth `json:"relay,omitempty"`
	Error  string       `json:"error,omitempty"`
}

// healthRelay answers /health/relay: 200 while the relay is moving, 503
// when it is stopped, cannot authenticate, has the target rejecting every
// row, or lags by more than --relay-health-max-lag-rows. It is open like
// /health, for a probe that watches forwarding separately from serving.
func (s *Server) healthRelay(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	body := relayHealthBody{}
	code := http.StatusOK
	switch rh := s.relayHealth(); {
	case rh == nil:
		code = http.StatusNotFound
		body.Status = "no relay"
		body.Error = "no relay is configured on this finelogd (--relay-address is not set)"
	case rh.Healthy:
		body.Status, body.Relay = "ok", rh
	default:
		code = http.StatusServiceUnavailable
		body.Status, body.Relay = rh.State, rh
		body.Error = rh.Error
		switch {
		case rh.Stopped:
			body.Status = "stopped"
		case relay.State(rh.State) == relay.StateAuthFailing || relay.State(rh.State) == relay.StateRejecting:
		default:
			body.Status = "lagging"
			body.Error = fmt.Sprintf("%d rows wait to be forwarded, more than --relay-health-max-lag-rows %d", rh.LagRows, rh.MaxLagRows)
		}
	}
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}
