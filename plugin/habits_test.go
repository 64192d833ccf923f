package plugin

import (
	"bytes"
	"testing"
)

func TestStandalone(t *testing.T) {
	cases := []struct {
		args           []string
		code           int
		ok             bool
		stdout, stderr string
	}{
		{[]string{"--version"}, 0, true, "pcap-cf-plugin version v9\n", ""},
		{[]string{"--help"}, 0, true, standaloneHelp, ""},
		{[]string{"-h"}, 0, true, standaloneHelp, ""},
		{nil, 1, true, "", standaloneHelp},
		{[]string{"myapp"}, 1, true, "", standaloneHelp},
		{[]string{"41234", "SendMetadata"}, 0, false, "", ""},
		{[]string{"41234", "pcap", "myapp"}, 0, false, "", ""},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code, ok := Standalone(c.args, "v9", &out, &errb)
		if code != c.code || ok != c.ok || out.String() != c.stdout || errb.String() != c.stderr {
			t.Errorf("Standalone(%q) = %d, %v, stdout %q, stderr %q; want %d, %v, %q, %q",
				c.args, code, ok, out.String(), errb.String(), c.code, c.ok, c.stdout, c.stderr)
		}
	}
	if want := "pcap-cf-plugin is a cf CLI plugin; the cf CLI runs it. Install it with\n"; standaloneHelp[:len(want)] != want {
		t.Errorf("help starts %q", standaloneHelp)
	}
}
