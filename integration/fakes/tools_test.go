// Tests in this package drive the real cf and bosh CLIs (built into
// build/bin by `make build/bin/cf build/bin/bosh`) against the fakes, to
// prove the fakes speak what the CLIs expect.
package fakes_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

// tool returns the path of build/bin/<name>, skipping the test when it is
// missing, unless PCAP_REQUIRE_TOOLS is set, which makes it fail.
func tool(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
	path := filepath.Join(dir, "build", "bin", name)
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("PCAP_REQUIRE_TOOLS") == "" {
			t.Skipf("%s not installed at %s (run `make build/bin/%s`; PCAP_REQUIRE_TOOLS=1 makes this a failure)", name, path, name)
		}
		t.Fatalf("%s not installed at %s and PCAP_REQUIRE_TOOLS is set", name, path)
	}
	return path
}

// cli runs one CLI binary with a clean environment rooted in a temp home.
type cli struct {
	t    *testing.T
	bin  string
	home string
	env  []string
}

func newCLI(t *testing.T, bin string, extraEnv ...string) *cli {
	home := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"CF_HOME=" + home,
		"CF_PLUGIN_HOME=" + home,
		"LANG=C.UTF-8",
		"TERM=dumb",
	}
	return &cli{t: t, bin: bin, home: home, env: append(env, extraEnv...)}
}

type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return "stdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// run runs the CLI with args and stdin, bounded to two minutes.
func (c *cli) run(stdin string, extraEnv []string, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(append([]string{}, c.env...), extraEnv...)
	cmd.Dir = c.home
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return result{stdout: out.String(), stderr: errOut.String(), err: err}
}

// must runs the CLI and fails the test when it exits non-zero.
func (c *cli) must(args ...string) string {
	c.t.Helper()
	r := c.run("", nil, args...)
	if r.err != nil {
		c.t.Fatalf("%s %s: %v\n%s", filepath.Base(c.bin), strings.Join(args, " "), r.err, r)
	}
	return r.stdout
}

func startUAA(t *testing.T, opts uaa.Options) *uaa.Server {
	t.Helper()
	u := uaa.StartForTest(t, opts)
	return u
}
