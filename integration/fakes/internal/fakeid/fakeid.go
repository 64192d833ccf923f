// Package fakeid derives the stable ids the fakes give what their worlds
// leave without one, so that the same world has the same ids every run.
package fakeid

import (
	"crypto/sha256"
	"encoding/hex"
)

// GUID makes a stable, GUID-shaped (version 4, RFC 4122 variant) id from
// name.
func GUID(name string) string {
	sum := sha256.Sum256([]byte(name))
	b := sum[:16]
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
