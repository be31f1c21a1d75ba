package ingest

import (
	"strings"

	"github.com/finelog/finelog/store"
)

// levelFromName maps the level words shippers and loggers use to finelog
// levels, case-insensitively; anything else is LevelUnknown.
func levelFromName(s string) int32 {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace", "debug", "dbg", "debug2", "debug3", "debug4", "fine", "finer", "finest":
		return store.LevelDebug
	case "info", "information", "informational", "notice", "info2", "info3", "info4":
		return store.LevelInfo
	case "warn", "warning", "wrn", "warn2", "warn3", "warn4":
		return store.LevelWarning
	case "error", "err", "eror", "error2", "error3", "error4":
		return store.LevelError
	case "critical", "crit", "fatal", "panic", "alert", "emerg", "emergency", "fatal2", "fatal3", "fatal4":
		return store.LevelCritical
	default:
		return store.LevelUnknown
	}
}

// levelFromSeverity maps an OTLP SeverityNumber (1..24 in six bands of
// four: TRACE, DEBUG, INFO, WARN, ERROR, FATAL) to a finelog level. TRACE
// has no finelog level of its own and becomes DEBUG.
func levelFromSeverity(n int32) int32 {
	switch {
	case n >= 1 && n <= 8:
		return store.LevelDebug
	case n >= 9 && n <= 12:
		return store.LevelInfo
	case n >= 13 && n <= 16:
		return store.LevelWarning
	case n >= 17 && n <= 20:
		return store.LevelError
	case n >= 21 && n <= 24:
		return store.LevelCritical
	default:
		return store.LevelUnknown
	}
}
