// Package tunnel is pcap's generic SSH plumbing, shared by every hop: a
// net/http-shaped [Server] that routes channel types to handlers, a
// [Client] with dial timeouts, keepalives and counted channels, key
// loading, host-key pinning, and coded rejections.
//
// It is built on golang.org/x/crypto/ssh and knows no protocol of its own.
// A refused channel is an ssh.OpenChannelError whose message is
// "<code>: <human text>"; [RejectChannel] writes it and [ParseRejection]
// turns it back into a [*RejectError], so a reason reaches the user
// verbatim across every hop.
//
// The protocols on top of it have packages of their own:
//   - [code.cloudfoundry.org/pcap/tunnel/agentproto]: pcap-api ↔ pcap-agent
//     (the capture channel, its request, stats, stop, watermarks);
//   - [code.cloudfoundry.org/pcap/tunnel/capturecmd]: the front door's
//     capture command and status lines;
//   - [code.cloudfoundry.org/pcap/tunnel/frontdoor]: the front door's
//     client, which both CLIs use.
package tunnel
