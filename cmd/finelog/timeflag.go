package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// timeBound is a --since/--until value: a duration back from now ("15m",
// "1h30m", "2d") or an RFC 3339 timestamp.
type timeBound struct {
	name string
	ago  time.Duration
	at   time.Time
	set  bool
}

const timeForms = "a duration back from now (90s, 15m, 1h30m, 1d, 2d12h) or an RFC 3339 time (2026-12-01T09:30:00Z)"

func (b *timeBound) String() string {
	switch {
	case !b.set:
		return ""
	case !b.at.IsZero():
		return b.at.Format(time.RFC3339Nano)
	default:
		return b.ago.String()
	}
}

func (b *timeBound) Set(s string) error {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		*b = timeBound{name: b.name, at: t, set: true}
		return nil
	}
	d, err := parseDays(s)
	if err != nil {
		return fmt.Errorf("--%s %q: want %s", b.name, s, timeForms)
	}
	if d < 0 {
		return fmt.Errorf("--%s %q is negative: want %s", b.name, s, timeForms)
	}
	*b = timeBound{name: b.name, ago: d, set: true}
	return nil
}

// time resolves the bound against now.
func (b *timeBound) time(now time.Time) time.Time {
	if !b.at.IsZero() {
		return b.at
	}
	return now.Add(-b.ago)
}

// parseDays is time.ParseDuration plus a leading "<n>d" of 24h days.
func parseDays(s string) (time.Duration, error) {
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	var days time.Duration
	if i := strings.IndexByte(body, 'd'); i > 0 {
		n, err := strconv.ParseUint(body[:i], 10, 16)
		if err != nil {
			return 0, err
		}
		days = time.Duration(n) * 24 * time.Hour
		body = body[i+1:]
	}
	var rest time.Duration
	if body != "" {
		var err error
		if rest, err = time.ParseDuration(body); err != nil {
			return 0, err
		}
		if rest < 0 {
			return 0, fmt.Errorf("sign inside the duration")
		}
	} else if days == 0 {
		return 0, fmt.Errorf("empty duration")
	}
	d := days + rest
	if neg {
		d = -d
	}
	return d, nil
}
