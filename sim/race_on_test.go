//go:build race

package sim

// raceEnabled: the race detector makes the store's segment writes (zstd
// inside parquet) about 20x slower, so the default number of checks is
// scaled down to keep `go test -race ./...` within CI's budget.
const raceEnabled = true
