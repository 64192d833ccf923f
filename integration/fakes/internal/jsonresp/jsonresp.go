// Package jsonresp writes the JSON responses of the Cloud Controller and
// director fakes: status, the service's Content-Type, and the body as
// encoding/json writes it but without HTML escaping (the real services
// send "&", "<" and ">" as they are).
package jsonresp

import (
	"encoding/json"
	"net/http"
)

// Write sends status with Content-Type contentType and v as JSON followed
// by a newline. An encoding error leaves the body short: the status has
// gone already.
func Write(w http.ResponseWriter, status int, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
