//go:build race

package store

// raceEnabled shrinks the exhaustive tests under the race detector, which
// makes parquet encoding ~30x slower; the full runs happen without -race.
const raceEnabled = true
