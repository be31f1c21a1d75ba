package server

import "github.com/finelog/finelog/peer"

// Defects puts known bugs back into the server, for the simulation's
// canaries only: each one proves that a property in sim/ notices the bug
// (a property that passes a broken server proves nothing). Production code
// never sets it; the zero value is the correct server.
type Defects struct {
	// NoIdentityRule lets a JWT identity of one cluster write rows of
	// another (the request's cluster is stamped unchecked).
	NoIdentityRule bool
	// InclusiveSince keeps rows with epoch_ms == since_ms.
	InclusiveSince bool
	// TailNewestFirst returns a tail page newest row first.
	TailNewestFirst bool
	// UngatedPprof mounts /debug/pprof/ outside the auth gate.
	UngatedPprof bool
	// AcceptOvertaking makes producer batches dedupe by high-water mark
	// alone, as a store without the gap rule would: a batch whose range
	// starts past the producer's mark + 1 is applied instead of refused,
	// and the earlier batch is then dropped as already applied.
	AcceptOvertaking bool
	// NoProducerNamespace skips the binding of producers to identities
	// (checkProducer's namespace rule): any admitted writer may push
	// batches for, and ask about, any producer, so another identity can
	// advance a relay's applied mark and make the store drop its rows.
	NoProducerNamespace bool
	// EvictUnuploaded lets the object tier evict a segment's local copy
	// before the bucket's manifest holds it (before its upload is
	// verified and published), as a tier that trusted the PUT's reply
	// would: a crash, a torn upload or a down bucket then leaves acked
	// rows nowhere.
	EvictUnuploaded bool
	// Peer passes the replica port's canaries on (peer.Defects: a
	// handshake that skips the MAC check, frames taken untagged, a replica
	// that acks before it syncs).
	Peer peer.Defects
}
