package pcap_test

import (
	"os/exec"
	"strings"
	"testing"
)

// module is this module's import path.
const module = "code.cloudfoundry.org/pcap"

// rule says what one binary or library must not link: the packages its
// `go list -deps` names must not start with any of forbidden.
type rule struct {
	pkg       string
	forbidden []string
}

// rules write down the import direction of docs/architecture.md. Clients
// never link the server, the agent, or what only they need (prometheus,
// gopacket); the server and the agent never link a CLI; the shared
// libraries under tunnel/ and bosh/ link neither side, and tunnel's layers
// (generic SSH, agent protocol, front door) link only those below them.
var rules = []rule{
	{"./plugin/cmd/pcap-cf-plugin", []string{module + "/api", module + "/agent", module + "/bosh/boshcli", "github.com/prometheus/", "github.com/gopacket/"}},
	{"./bosh/cmd/pcap-bosh", []string{module + "/api", module + "/agent", module + "/plugin", "github.com/prometheus/", "github.com/gopacket/"}},
	{"./api/cmd/pcap-api", []string{module + "/agent", module + "/plugin", module + "/bosh/boshcli", module + "/bosh/cmd"}},
	{"./agent/cmd/pcap-agent", []string{module + "/api", module + "/plugin", module + "/bosh", module + "/tunnel/capturecmd", module + "/tunnel/frontdoor"}},
	{"./tunnel", []string{module + "/tunnel/agentproto", module + "/tunnel/capturecmd", module + "/tunnel/frontdoor"}},
	{"./tunnel/agentproto", []string{module + "/tunnel/capturecmd", module + "/tunnel/frontdoor"}},
	{"./tunnel/...", []string{module + "/api", module + "/agent", module + "/plugin", module + "/bosh"}},
	{"./bosh/director", []string{module + "/api", module + "/agent", module + "/plugin", module + "/bosh/boshcli", module + "/tunnel"}},
	{"./bosh/uaa", []string{module + "/api", module + "/agent", module + "/plugin", module + "/bosh/boshcli", module + "/tunnel"}},
	{"./internal/...", []string{module + "/api", module + "/agent", module + "/plugin", module + "/bosh", module + "/tunnel"}},
	{"./bosh/allproxy", []string{module + "/api", module + "/agent", module + "/plugin", module + "/bosh/boshcli", "github.com/prometheus/", "github.com/gopacket/"}},
}

// clientOSes are the platforms the client binaries ship for (make plugin):
// a platform-only file must not bring the server back in either.
var clientOSes = []string{"linux", "darwin", "windows"}

func TestImportDirection(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	for _, r := range rules {
		oses := []string{"linux"}
		if strings.HasPrefix(r.pkg, "./plugin/") || strings.HasPrefix(r.pkg, "./bosh/cmd/") || strings.HasPrefix(r.pkg, "./tunnel") {
			oses = clientOSes
		}
		for _, goos := range oses {
			t.Run(strings.TrimPrefix(r.pkg, "./")+"/"+goos, func(t *testing.T) {
				cmd := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", r.pkg)
				cmd.Env = append(cmd.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("go list -deps %s: %v\n%s", r.pkg, err, stderrOf(err))
				}
				deps := strings.Fields(string(out))
				if len(deps) == 0 {
					t.Fatalf("go list -deps %s named no package", r.pkg)
				}
				for _, d := range deps {
					for _, f := range r.forbidden {
						if within(d, f) {
							t.Errorf("%s (GOOS=%s) links %s; docs/architecture.md says it must not", r.pkg, goos, d)
						}
					}
				}
			})
		}
	}
}

// within reports whether package path d is f or below it; an f ending in
// "/" names every package below a module path prefix.
func within(d, f string) bool {
	if strings.HasSuffix(f, "/") {
		return strings.HasPrefix(d, f)
	}
	return d == f || strings.HasPrefix(d, f+"/")
}

func TestWithin(t *testing.T) {
	cases := []struct {
		d, f string
		want bool
	}{
		{module + "/api", module + "/api", true},
		{module + "/api/cfresolver", module + "/api", true},
		{module + "/apiclient", module + "/api", false},
		{module + "/bosh/boshcli", module + "/bosh", true},
		{"github.com/prometheus/client_golang/prometheus", "github.com/prometheus/", true},
		{"github.com/prometheusx/y", "github.com/prometheus/", false},
	}
	for _, c := range cases {
		if got := within(c.d, c.f); got != c.want {
			t.Errorf("within(%q, %q) = %v, want %v", c.d, c.f, got, c.want)
		}
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
