// Package tunnel is pcap's SSH plumbing and its agent protocol, shared by
// every hop.
//
// It is built on golang.org/x/crypto/ssh. A capture is an SSH channel of
// type [ChannelCapture]; the channel-open payload is a JSON
// [CaptureRequest]. When the agent accepts, the channel's data is a pcapng
// stream (section header, one interface description block per captured
// interface, enhanced packet blocks). Control travels as channel requests:
//
//   - "stop" (client → agent, no payload): end the capture gracefully.
//   - "stats" (agent → client, JSON [Stats]): sent periodically while the
//     capture runs and once more, with Final set, before the agent closes
//     the channel.
//
// A rejected capture is an ssh.OpenChannelError whose message is
// "<code>: <human text>"; [ParseRejection] turns it back into a
// [*RejectError] so a reason reaches the user verbatim.
//
// The front door's capture command and status lines are in
// [code.cloudfoundry.org/pcap/tunnel/capturecmd], its client in
// [code.cloudfoundry.org/pcap/tunnel/frontdoor]; pcap-api's server side of
// the front door (package api) also speaks SSH, through this package's
// [Server].
package tunnel
