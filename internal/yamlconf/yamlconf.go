// Package yamlconf reads the services' YAML config files the one way both
// do it: strictly (an unknown key is an error, so a typo never silently
// falls back to a default) and over defaults the caller has filled in.
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// Decode parses the YAML document b into v, which holds the defaults: a
// key b does not name keeps its default, an unknown key is an error, and
// an empty document changes nothing.
func Decode(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Load reads the file at path and hands its bytes to parse. A file that
// cannot be read is reported as "<component>: read config: …".
func Load[T any](path, component string, parse func([]byte) (T, error)) (T, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: read config: %w", component, err)
	}
	return parse(b)
}
