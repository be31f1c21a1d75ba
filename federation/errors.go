package federation

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
)

// peerError maps a failed peer call to what the caller gets. It is never
// internal: the caller asked a fair question and a peer failed it. Every
// message names the peer and its address.
//
//   - unreachable, 5xx, anything unexpected: unavailable
//   - the peer's deadline, or ours: deadline_exceeded
//   - the peer refusing this store's token: failed_precondition, since
//     the federation keys are misconfigured, not the caller's request
//   - invalid_argument and not_found: passed through (the caller's filters
//     were refused by the owner)
//   - a cancellation this store did not ask for (a connection the peer
//     dropped can surface as one): unavailable
//
// The caller going away is not a peer error: callPeer reports it as
// callerGone.
func peerError(self string, p *peer, err error) *connect.Error {
	prefix := fmt.Sprintf("peer %s (%s): ", p.Cluster, p.Address)
	var ce *connect.Error
	if !errors.As(err, &ce) {
		if errors.Is(err, context.DeadlineExceeded) {
			return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("%sno answer before the deadline", prefix))
		}
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%s%v", prefix, err))
	}
	switch ce.Code() {
	case connect.CodeInvalidArgument, connect.CodeNotFound:
		return connect.NewError(ce.Code(), fmt.Errorf("%s%s", prefix, ce.Message()))
	case connect.CodeUnauthenticated, connect.CodePermissionDenied:
		return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
			"%srefused this store's delegation token (%s: %s): the federation keys are misconfigured; "+
				"the peer's auth policy must list this store's key_file in a jwt layer under cluster %q, and its --cluster must be %q "+
				"(an expired or not-yet-valid token means the two stores' clocks disagree)",
			prefix, ce.Code(), ce.Message(), self, p.Cluster))
	case connect.CodeDeadlineExceeded:
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("%sno answer before the deadline: %s", prefix, ce.Message()))
	default:
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%s%s: %s", prefix, ce.Code(), ce.Message()))
	}
}

// callerGone is the error of a peer call whose caller (or fan-out) ended
// it: canceled, or deadline_exceeded when the caller's deadline passed.
func callerGone(p *peer, err error) *connect.Error {
	code := connect.CodeCanceled
	if errors.Is(err, context.DeadlineExceeded) {
		code = connect.CodeDeadlineExceeded
	}
	return connect.NewError(code, fmt.Errorf("peer %s (%s): %w", p.Cluster, p.Address, err))
}

// codeName is the ClusterStatus.code and metric label of an outcome.
func codeName(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

// message is err's text without the code prefix connect.Error adds.
func message(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}
