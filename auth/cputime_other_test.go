//go:build !linux

package auth

import "time"

func threadCPU() (time.Duration, bool) { return 0, false }
