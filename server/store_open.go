package server

import "github.com/finelog/finelog/store"

// defaultOpen opens the real store engine.
func defaultOpen(o store.Options) (logStore, error) { return store.Open(o) }
