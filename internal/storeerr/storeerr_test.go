package storeerr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

// The codes decide what a client does: retry, split, or give up. A disk
// full is retryable (it carries the retry header), an invalid request is
// not, and a producer gap is aborted so the relay re-asks the target.
func TestToConnect(t *testing.T) {
	for _, tc := range []struct {
		err       error
		code      connect.Code
		retryable bool
	}{
		{store.ErrInvalidArgument, connect.CodeInvalidArgument, false},
		{store.ErrProducerGap, connect.CodeAborted, true},
		{store.ErrNoSpace, connect.CodeResourceExhausted, true},
		{store.ErrQueryBudget, connect.CodeResourceExhausted, false},
		{store.ErrClosed, connect.CodeUnavailable, true},
		{context.DeadlineExceeded, connect.CodeDeadlineExceeded, true},
		{context.Canceled, connect.CodeCanceled, false},
		{&objstore.Error{Bucket: "s3://logs/", Op: "get", Err: objstore.ErrUnavailable}, connect.CodeUnavailable, true},
		{errors.New("segment checksum mismatch"), connect.CodeInternal, false},
	} {
		ce := ToConnect("push", fmt.Errorf("store: %w", tc.err))
		if ce.Code() != tc.code {
			t.Errorf("%v: code %v, want %v", tc.err, ce.Code(), tc.code)
		}
		if got := client.Retryable(ce); got != tc.retryable {
			t.Errorf("%v: client.Retryable = %v, want %v", tc.err, got, tc.retryable)
		}
	}
	if ce := ToConnect("fetch", errors.New("boom")); !strings.Contains(ce.Message(), "fetch: boom") {
		t.Errorf("internal error message %q does not name the operation", ce.Message())
	}
}
