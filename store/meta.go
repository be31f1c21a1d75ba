package store

// storeMeta is meta.json: what retention must not forget when it deletes
// every segment that held it.
type storeMeta struct {
	// FloorSeq: every seq <= FloorSeq was deleted by retention, so a store
	// whose segments and WAL are all gone still continues numbering after it.
	FloorSeq int64 `json:"floor_seq"`
	// Producers: producer marks, in stores from before producers.json. Read
	// (when there is no producers.json), never written.
	Producers map[string]int64 `json:"producers,omitempty"`
}

const metaName = "meta.json"
