package server

import (
	"errors"

	"github.com/finelog/finelog/store"
)

// TEMPORARY until store.Open lands.
func defaultOpen(o store.Options) (logStore, error) {
	return nil, errors.New("store engine not in this build yet")
}
