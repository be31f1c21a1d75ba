// Package wire holds the constants of finelogd's wire contract that
// clients need: request limits and error metadata. It imports nothing, so
// the CLI and other clients can use them without linking the store.
package wire

// Limits the server enforces on every request. store/ enforces the same
// numbers (wire_test.go checks they agree).
const (
	// MaxRowBytes is the largest row (key + data + source) a push may carry.
	MaxRowBytes = 1 << 20
	// MaxBatchBytes is the largest batch one push may carry.
	MaxBatchBytes = 16 << 20
	// MaxMaxLines is the most rows one FetchLogs returns; a larger
	// max_lines is capped to it.
	MaxMaxLines = 10000
)

// RetryHeader is the error metadata key finelogd sets on a
// resource_exhausted error that is transient (the disk is full), so clients
// can tell it apart from an oversize request, which is permanent.
const RetryHeader = "Finelog-Retryable"
