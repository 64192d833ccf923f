// Package testreq decides what a test does when something it needs is
// missing (a tool, root, a device): it is skipped as "not installed", or,
// when PCAP_REQUIRE_TOOLS is set (make test and CI set it), it fails, so
// that a suite never turns green by skipping. Tests only.
package testreq

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Required reports whether missing requirements fail tests
// (PCAP_REQUIRE_TOOLS set) instead of skipping them.
func Required() bool { return os.Getenv("PCAP_REQUIRE_TOOLS") != "" }

// Missing skips t because what is missing, or fails it under
// PCAP_REQUIRE_TOOLS. hint says how to get it.
func Missing(t testing.TB, what, hint string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s is missing (%s) and PCAP_REQUIRE_TOOLS is set", what, hint)
		return
	}
	t.Skipf("%s is missing (%s; PCAP_REQUIRE_TOOLS=1 makes this a failure)", what, hint)
}

// Tool returns the path of a tool, a file path or a name looked up in
// PATH, or calls Missing.
func Tool(t testing.TB, nameOrPath, hint string) string {
	t.Helper()
	var path string
	var err error
	if strings.Contains(nameOrPath, "/") {
		_, err = os.Stat(nameOrPath)
		path = nameOrPath
	} else {
		path, err = exec.LookPath(nameOrPath)
	}
	if err != nil {
		Missing(t, nameOrPath, hint)
	}
	return path
}

// Root calls Missing unless the test runs as root.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root", why)
	}
}
