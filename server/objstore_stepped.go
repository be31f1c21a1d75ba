package server

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
)

// StoreFS prepares the object tier for a caller that opens the store
// itself and hands it to ServeStore (the simulation): the store must be
// opened on the returned FS, in DataDir/store. Without an object store it
// returns the configured FS.
func (s *Server) StoreFS(ctx context.Context) (vfs.FS, error) {
	return s.openTier(ctx, filepath.Join(s.cfg.DataDir, "store"))
}

// TierRound runs one round of the object tier on the caller's goroutine:
// reconcile the store dir, upload and publish until idle or backing off,
// evict, collect garbage. With ObjectStoreConfig.Stepped it is the only
// way the tier makes progress.
func (s *Server) TierRound(ctx context.Context) error {
	if s.tier == nil {
		return errors.New("no object store configured")
	}
	return s.tier.round(ctx)
}

// Tier returns the object tier (nil without an object store).
func (s *Server) Tier() *objstore.Tier {
	if s.tier == nil {
		return nil
	}
	return s.tier.tier
}
