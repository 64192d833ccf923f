// Package agentproto is the protocol between pcap-api and pcap-agent, on
// top of package tunnel's SSH plumbing.
//
// A capture is an SSH channel of type [ChannelCapture]; the channel-open
// payload is a JSON [CaptureRequest]. When the agent accepts, the channel's
// data is a pcapng stream (section header, one interface description block
// per captured interface, enhanced packet blocks, and watermark blocks when
// the request asks for them: [AppendWatermark]). Control travels as channel
// requests:
//
//   - [RequestStop] (client → agent, no payload): end the capture
//     gracefully.
//   - [RequestStats] (agent → client, JSON [Stats]): sent periodically while
//     the capture runs and once more, with Final set, before the agent
//     closes the channel.
//
// A refused capture is a [*tunnel.RejectError] (see [tunnel.RejectChannel]).
// [OpenCapture] is the client side; the agent's side is package agent.
package agentproto
