package testreq

import (
	"testing"
)

// fakeT records how a requirement ended the test.
type fakeT struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Skipf(string, ...any)  { f.skipped = true }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true }

func TestMissing(t *testing.T) {
	for _, req := range []string{"", "1"} {
		t.Setenv("PCAP_REQUIRE_TOOLS", req)
		f := &fakeT{}
		Tool(f, "pcap-no-such-tool", "nothing installs it")
		if req == "" && (!f.skipped || f.failed) || req != "" && (!f.failed || f.skipped) {
			t.Errorf("PCAP_REQUIRE_TOOLS=%q: skipped %v, failed %v", req, f.skipped, f.failed)
		}
		f = &fakeT{}
		if p := Tool(f, "sh", ""); p == "" || f.skipped || f.failed {
			t.Errorf("sh: %q, skipped %v, failed %v", p, f.skipped, f.failed)
		}
	}
}
