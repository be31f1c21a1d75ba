package peer

// Defects puts known bugs back into the peer port, for the simulation's
// canaries only (server.Defects passes them on): each proves that a
// property in sim/ notices the bug. Production code never sets it; the
// zero value is the correct port.
type Defects struct {
	// SkipMACCheck makes the handshake take any mac_a (dialer) and any
	// mac_d (acceptor): a node without the PSK completes a handshake.
	SkipMACCheck bool
	// SkipTagCheck makes a Conn take every received frame without
	// verifying its tag, as a port with an authenticated handshake but
	// untagged frames would: anyone on the path can inject frames.
	SkipTagCheck bool
	// AckBeforeSync makes a replica ack the frames it received at once and
	// write their records only with the next frames: an acked row is lost
	// if the link or the replica goes down in between.
	AckBeforeSync bool
	// ShipUnchecked makes a primary ship a sealed segment as soon as it is
	// sealed (not once the link has sent its rows) and a replica adopt a
	// shipped segment without checking that it holds every seq of it or
	// that none of its own segments straddles it: the replica then holds
	// rows twice, or skips rows it never received.
	ShipUnchecked bool
}
