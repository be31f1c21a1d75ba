// Package peer is finelog's replica port: a plaintext TCP link between a
// primary finelogd (the acceptor) and a standby (the dialer) that follows
// it. Both ends prove they hold the cluster's pre-shared key with a
// 3-message BLAKE3 keyed-MAC handshake (Hello, Challenge, Finish); after it
// every frame carries a 16-byte tag under a per-direction session key and
// an implicit counter, so nobody without the key can inject, replay, drop
// or reorder frames. On top of that the primary streams its committed WAL
// records (with producer marks and the retention floor) and the replica
// acknowledges what it has made durable.
//
// The wire format is a protocol, specified byte for byte in
// docs/replica.md; an independent implementation must interoperate with
// this one.
package peer
