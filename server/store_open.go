package server

import "github.com/finelog/finelog/store"

// openStore opens the store engine.
func openStore(o store.Options) (logStore, error) { return store.Open(o) }
