//go:build race

package relay

// raceEnabled: the race detector makes each push and dead-letter append
// about 12x slower, so tests that need tens of thousands of them skip
// under it and run in a plain `go test ./...`.
const raceEnabled = true
