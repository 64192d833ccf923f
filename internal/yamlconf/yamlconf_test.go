package yamlconf

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type conf struct {
	Listen string `yaml:"listen"`
	Max    int    `yaml:"max"`
}

func TestDecodeOverDefaults(t *testing.T) {
	tests := []struct {
		name, doc string
		want      conf
		err       string
	}{
		{"empty keeps defaults", "", conf{Listen: ":1", Max: 4}, ""},
		{"comment only", "# nothing\n", conf{Listen: ":1", Max: 4}, ""},
		{"one key", "max: 9\n", conf{Listen: ":1", Max: 9}, ""},
		{"unknown key", "maxx: 9\n", conf{}, "field maxx not found in type yamlconf.conf"},
		{"wrong type", "max: many\n", conf{}, "cannot unmarshal !!str `many` into int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := conf{Listen: ":1", Max: 4}
			err := Decode([]byte(tt.doc), &c)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Decode(%q) = %v, want an error with %q", tt.doc, err, tt.err)
				}
				return
			}
			if err != nil || c != tt.want {
				t.Errorf("Decode(%q) = %+v, %v; want %+v", tt.doc, c, err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	parse := func(b []byte) (conf, error) {
		c := conf{Max: 4}
		return c, Decode(b, &c)
	}
	p := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(p, []byte("listen: :9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(p, "agent", parse); err != nil || c != (conf{Listen: ":9", Max: 4}) {
		t.Errorf("Load() = %+v, %v", c, err)
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.yml"), "agent", parse)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "agent: read config: open ") {
		t.Errorf("Load(missing) = %v, want agent: read config: open …: not exist", err)
	}
}
