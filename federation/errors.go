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
//   - the caller went away: canceled
func peerError(self string, p *peer, err error) *connect.Error {
	prefix := fmt.Sprintf("peer %s (%s): ", p.Cluster, p.Address)
	var ce *connect.Error
	if !errors.As(err, &ce) {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("%sno answer before the deadline", prefix))
		case errors.Is(err, context.Canceled):
			return connect.NewError(connect.CodeCanceled, fmt.Errorf("%scanceled", prefix))
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
	case connect.CodeCanceled:
		return connect.NewError(connect.CodeCanceled, fmt.Errorf("%scanceled", prefix))
	default:
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%s%s: %s", prefix, ce.Code(), ce.Message()))
	}
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
