package agentproto

import (
	"encoding/binary"
	"fmt"
)

// Watermarks. An agent tells the API "no packet older than T will follow
// on this capture channel" so that the API can merge many agents' packets
// in strict timestamp order with a bounded delay. The watermark travels
// inside the pcapng stream, as a pcapng Custom Block, rather than as a
// channel request: a channel request overtakes the stream data that the
// API has not read yet, while a block in the stream is read exactly after
// the packets written before it, which is the position a watermark speaks
// about. Readers that do not know the block skip it (pcapng requires it,
// and gopacket's pcapgo does), so older APIs keep working with newer
// agents; the API never copies it to its output.
//
// Layout (section byte order), 28 bytes:
//
//	block type  0x40000BAD (custom block, not to be copied)
//	block total length 28
//	private enterprise number WatermarkPEN
//	kind 1 ("watermark")
//	T: nanoseconds since the epoch, high 32 bits then low 32 bits
//	block total length 28
const (
	WatermarkBlockType = 0x40000BAD
	// WatermarkPEN is the private enterprise number the block carries:
	// 32473, which RFC 5612 sets aside for documentation and private
	// examples. The block never leaves the agent → API hop, and its kind
	// field tells it apart from anyone else's use of that number.
	WatermarkPEN   = 32473
	watermarkKind  = 1
	watermarkBytes = 28
)

// AppendWatermark appends a little-endian watermark block for t
// (nanoseconds since the epoch) to b.
func AppendWatermark(b []byte, t int64) []byte {
	le := binary.LittleEndian
	b = le.AppendUint32(b, WatermarkBlockType)
	b = le.AppendUint32(b, watermarkBytes)
	b = le.AppendUint32(b, WatermarkPEN)
	b = le.AppendUint32(b, watermarkKind)
	b = le.AppendUint32(b, uint32(uint64(t)>>32))
	b = le.AppendUint32(b, uint32(t))
	return le.AppendUint32(b, watermarkBytes)
}

// DecodeWatermark decodes a whole custom block (type WatermarkBlockType,
// lengths already checked by the caller) in byte order bo. ok is false for
// another enterprise's or kind's custom block, which the caller skips.
func DecodeWatermark(block []byte, bo binary.ByteOrder) (t int64, ok bool, err error) {
	if len(block) < 16 || bo.Uint32(block[8:]) != WatermarkPEN || bo.Uint32(block[12:]) != watermarkKind {
		return 0, false, nil
	}
	if len(block) != watermarkBytes {
		return 0, false, fmt.Errorf("agentproto: watermark block of %d bytes, want %d", len(block), watermarkBytes)
	}
	t = int64(uint64(bo.Uint32(block[16:]))<<32 | uint64(bo.Uint32(block[20:])))
	if t < 0 {
		return 0, false, fmt.Errorf("agentproto: watermark %d before the epoch", t)
	}
	return t, true, nil
}
