package releasetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// libpcapTarball is a real libpcap source tarball for the libpcap blob:
// $PCAP_LIBPCAP_TARBALL, else the newest build/release-blobs/libpcap-*.tar.gz
// (bosh/release/scripts/libpcap-source-from-debian puts one there); ""
// when there is none.
func libpcapTarball() string {
	if p := os.Getenv("PCAP_LIBPCAP_TARBALL"); p != "" {
		return p
	}
	m, _ := filepath.Glob(filepath.Join(repoRoot(), "build", "release-blobs", "libpcap-*.tar.gz"))
	sort.Strings(m)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1]
}

// copyWorkingTree copies the files git tracks or would track (not the
// ignored ones: build/, bin/, the release's blobs and src/) into dst, keeping symlinks,
// like a clean checkout of the working tree.
func copyWorkingTree(t *testing.T, dst string) {
	t.Helper()
	root := repoRoot()
	out := must(t, time.Minute, root, nil, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	for _, rel := range strings.Split(strings.TrimRight(out, "\x00"), "\x00") {
		src := filepath.Join(root, rel)
		fi, err := os.Lstat(src)
		if err != nil {
			continue // deleted in the working tree
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, to); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// writeTarGz writes a gzipped tarball holding files (name to content).
func writeTarGz(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readTarGz returns the regular files of a gzipped tarball, by name
// without a leading "./".
func readTarGz(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	gz, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = b
	}
}

// standInGolangRelease makes a final release "golang" with a package
// golang-1-linux, shaped like cloudfoundry/bosh-package-golang-release,
// whose blob is a stand-in (the real one, a Go toolchain, comes from that
// release's blobstore, out of reach here), and returns its directory. The
// final release's blobs stay in the bosh CLI's cache under home, where
// vendor-package finds them (as it would after downloading them).
func standInGolangRelease(t *testing.T, bosh, dir string, env []string) string {
	t.Helper()
	rel := filepath.Join(dir, "golang-release")
	must(t, time.Minute, dir, env, bosh, "init-release", "--dir", rel)
	final := "name: golang\nblobstore:\n  provider: local\n  options:\n    blobstore_path: " + filepath.Join(dir, "golang-blobstore") + "\n"
	if err := os.WriteFile(filepath.Join(rel, "config", "final.yml"), []byte(final), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, time.Minute, rel, env, bosh, "generate-package", "golang-1-linux", "--dir", rel)
	blob := filepath.Join(dir, "go.linux-amd64.tar.gz")
	writeTarGz(t, blob, map[string]string{"go/VERSION": "stand-in for a Go toolchain\n"})
	must(t, time.Minute, rel, env, bosh, "add-blob", blob, "golang/go.linux-amd64.tar.gz", "--dir", rel)
	spec := "---\nname: golang-1-linux\nfiles:\n- golang/go.linux-amd64.tar.gz\n"
	if err := os.WriteFile(filepath.Join(rel, "packages", "golang-1-linux", "spec"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "packages", "golang-1-linux", "packaging"), []byte("tar xzf golang/*.tar.gz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, time.Minute, rel, env, bosh, "upload-blobs", "--dir", rel)
	must(t, time.Minute, rel, env, bosh, "create-release", "--final", "--force", "--dir", rel)
	return rel
}

// releaseMF is the part of release.MF the test reads.
type releaseMF struct {
	Name     string                  `yaml:"name"`
	Version  string                  `yaml:"version"`
	Jobs     []struct{ Name string } `yaml:"jobs"`
	Packages []struct {
		Name         string   `yaml:"name"`
		Fingerprint  string   `yaml:"fingerprint"`
		Dependencies []string `yaml:"dependencies"`
	} `yaml:"packages"`
}

// TestRelease builds the release the documented way, from a copy of the
// working tree: bosh/release/scripts/prepare-src, `bosh vendor-package
// golang-1-linux <golang-release>`, `bosh add-blob` of a
// libpcap source tarball, `bosh create-release --force --tarball`. Then it
// checks the tarball and, when a C toolchain, flex, bison and a real
// libpcap tarball are here, runs the packaging scripts the way a BOSH
// compilation VM would and checks the binaries they build.
func TestRelease(t *testing.T) {
	bosh := boshCLI(t)
	tmp := t.TempDir()
	env := []string{"HOME=" + t.TempDir()}
	repo := filepath.Join(tmp, "repo")
	copyWorkingTree(t, repo)
	rel := filepath.Join(repo, "bosh", "release")

	// The Go source and its vendored dependencies, for the offline
	// compilation VM.
	must(t, 3*time.Minute, repo, nil, filepath.Join(rel, "scripts", "prepare-src"))

	// The release's final blobstore, here a local directory.
	final, err := os.ReadFile(filepath.Join(rel, "config", "final.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var finalCfg map[string]any
	if err := yaml.Unmarshal(final, &finalCfg); err != nil {
		t.Fatal(err)
	}
	if finalCfg["name"] != "pcap" {
		t.Errorf("config/final.yml name %v", finalCfg["name"])
	}
	finalCfg["blobstore"] = map[string]any{"provider": "local", "options": map[string]any{"blobstore_path": filepath.Join(tmp, "pcap-blobstore")}}
	if b, err := yaml.Marshal(finalCfg); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(filepath.Join(rel, "config", "final.yml"), b, 0o644); err != nil {
		t.Fatal(err)
	}

	golangRelease := standInGolangRelease(t, bosh, tmp, env)
	must(t, time.Minute, rel, env, bosh, "vendor-package", "golang-1-linux", golangRelease, "--dir", rel)

	realLibpcap := libpcapTarball()
	blob := realLibpcap
	if blob == "" {
		blob = filepath.Join(tmp, "libpcap-0.0.0.tar.gz")
		writeTarGz(t, blob, map[string]string{"libpcap-0.0.0/README": "stand-in for libpcap's source\n"})
	}
	must(t, time.Minute, rel, env, bosh, "add-blob", blob, "libpcap/"+filepath.Base(blob), "--dir", rel)

	tarball := filepath.Join(tmp, "pcap-dev.tgz")
	must(t, 3*time.Minute, rel, env, bosh, "create-release", "--force", "--dir", rel, "--tarball", tarball)

	listing := must(t, time.Minute, tmp, nil, "tar", "tzf", tarball)
	var names []string
	for _, n := range strings.Fields(listing) {
		names = append(names, strings.TrimPrefix(n, "./"))
	}
	for _, want := range []string{"release.MF", "jobs/pcap-agent.tgz", "jobs/pcap-api.tgz",
		"packages/pcap.tgz", "packages/libpcap.tgz", "packages/golang-1-linux.tgz"} {
		if !slices.Contains(names, want) {
			t.Errorf("release tarball lacks %s:\n%s", want, listing)
		}
	}

	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := readTarGz(t, f)

	var mf releaseMF
	if err := yaml.Unmarshal(files["release.MF"], &mf); err != nil {
		t.Fatal(err)
	}
	if mf.Name != "pcap" {
		t.Errorf("release name %q", mf.Name)
	}
	var jobs, pkgs []string
	for _, j := range mf.Jobs {
		jobs = append(jobs, j.Name)
	}
	deps := map[string][]string{}
	fingerprints := map[string]string{}
	for _, p := range mf.Packages {
		pkgs = append(pkgs, p.Name)
		deps[p.Name] = p.Dependencies
		fingerprints[p.Name] = p.Fingerprint
	}
	sort.Strings(jobs)
	sort.Strings(pkgs)
	if !slices.Equal(jobs, []string{"pcap-agent", "pcap-api"}) || !slices.Equal(pkgs, []string{"golang-1-linux", "libpcap", "pcap"}) {
		t.Errorf("release.MF jobs %v packages %v", jobs, pkgs)
	}
	if d := deps["pcap"]; !slices.Equal(d, []string{"golang-1-linux", "libpcap"}) {
		t.Errorf("pcap depends on %v", d)
	}

	for _, job := range []string{"pcap-agent", "pcap-api"} {
		jf := readTarGz(t, bytes.NewReader(files["jobs/"+job+".tgz"]))
		for _, want := range []string{"job.MF", "monit", "templates/bpm.yml.erb"} {
			if _, ok := jf[want]; !ok {
				t.Errorf("jobs/%s.tgz lacks %s", job, want)
			}
		}
	}

	pcapPkg := readTarGz(t, bytes.NewReader(files["packages/pcap.tgz"]))
	t.Run("pcap package holds the binaries' source", func(t *testing.T) {
		for _, want := range []string{"packaging", "pcap/go.mod", "pcap/go.sum", "pcap/vendor/modules.txt",
			"pcap/vendor/github.com/gopacket/gopacket/pcap/pcap.go"} {
			if _, ok := pcapPkg[want]; !ok {
				t.Errorf("packages/pcap.tgz lacks %s", want)
			}
		}
		for name := range pcapPkg {
			if strings.HasSuffix(name, "_test.go") || strings.HasPrefix(name, "pcap/integration/") || strings.HasPrefix(name, "pcap/plugin/") {
				t.Errorf("packages/pcap.tgz holds %s", name)
			}
		}
		// Every Go file of this module that pcap-agent and pcap-api are
		// built from.
		out := must(t, time.Minute, repoRoot(), nil, "go", "list", "-deps",
			"-f", `{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .CgoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}{{end}}`,
			"./agent/cmd/pcap-agent", "./api/cmd/pcap-api")
		for _, abs := range strings.Fields(out) {
			rel, err := filepath.Rel(repoRoot(), abs)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := pcapPkg["pcap/"+rel]; !ok {
				t.Errorf("packages/pcap.tgz lacks pcap/%s", rel)
			}
		}
	})

	t.Run("packaging scripts compile", func(t *testing.T) {
		if realLibpcap == "" {
			notInstalled(t, "libpcap source tarball", "run bosh/release/scripts/libpcap-source-from-debian, or set PCAP_LIBPCAP_TARBALL")
		}
		for _, tool := range []string{"cc", "make", "flex", "bison"} {
			requireTool(t, tool, "libpcap's build needs a C toolchain, flex and bison: apt-get install build-essential flex bison")
		}
		compileRelease(t, files, fingerprints["libpcap"], filepath.Join(tmp, "compile"))
	})
}

// compileRelease runs the libpcap and pcap packaging scripts from the
// release tarball's package archives like a compilation VM does (the
// archive unpacked in BOSH_COMPILE_TARGET, `bash packaging`, results in
// BOSH_INSTALL_TARGET under BOSH_PACKAGES_DIR), with the Go toolchain this
// test runs with standing in for golang-1-linux, and no network for Go.
// BOSH_PACKAGES_DIR is build/release-cache/packages, a fixed path like
// /var/vcap/packages, so the Go build cache stays valid across runs (the
// cgo flags name it); libpcap is rebuilt only when its package fingerprint
// (spec, packaging script, tarball) changes.
func compileRelease(t *testing.T, files map[string][]byte, libpcapFingerprint, dir string) {
	if libpcapFingerprint == "" {
		t.Fatal("release.MF has no fingerprint for libpcap")
	}
	cacheDir := filepath.Join(repoRoot(), "build", "release-cache")
	packages := filepath.Join(cacheDir, "packages")
	if err := os.MkdirAll(packages, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(cacheDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	goroot := strings.TrimSpace(must(t, time.Minute, "", nil, "go", "env", "GOROOT"))
	gocache := strings.TrimSpace(must(t, time.Minute, "", nil, "go", "env", "GOCACHE"))
	golang := filepath.Join(packages, "golang-1-linux", "bosh")
	if err := os.MkdirAll(golang, 0o755); err != nil {
		t.Fatal(err)
	}
	compileEnv := "export GOROOT=" + goroot + "\nexport GOPATH=\"${PWD}/gopath\"\nexport GOCACHE=" + gocache + "\nexport PATH=\"${GOROOT}/bin:${PATH}\"\n"
	if err := os.WriteFile(filepath.Join(golang, "compile.env"), []byte(compileEnv), 0o644); err != nil {
		t.Fatal(err)
	}

	unpack := func(name string) string {
		t.Helper()
		src := filepath.Join(dir, "compile", name)
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		archive := filepath.Join(dir, name+".tgz")
		if err := os.WriteFile(archive, files["packages/"+name+".tgz"], 0o644); err != nil {
			t.Fatal(err)
		}
		must(t, time.Minute, src, nil, "tar", "xzf", archive)
		return src
	}
	runPackaging := func(name, src string) {
		t.Helper()
		install := filepath.Join(packages, name)
		if err := os.RemoveAll(install); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(install, 0o755); err != nil {
			t.Fatal(err)
		}
		env := []string{
			"BOSH_COMPILE_TARGET=" + src,
			"BOSH_INSTALL_TARGET=" + install,
			"BOSH_PACKAGES_DIR=" + packages,
			"BOSH_PACKAGE_NAME=" + name,
			"BOSH_PACKAGE_VERSION=dev",
			"GOPROXY=off", "GOFLAGS=", "GOTOOLCHAIN=local",
		}
		r := run(t, 5*time.Minute, src, env, "bash", "packaging")
		if r.err != nil {
			os.RemoveAll(install)
			t.Fatalf("%s packaging: %s", name, r)
		}
	}

	stamp := filepath.Join(packages, "libpcap", ".fingerprint")
	if b, err := os.ReadFile(stamp); err != nil || string(b) != libpcapFingerprint {
		runPackaging("libpcap", unpack("libpcap"))
		if err := os.WriteFile(stamp, []byte(libpcapFingerprint), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(packages, "libpcap", "lib", "libpcap.a")); err != nil {
		t.Errorf("libpcap package installs no static library: %v", err)
	}
	if libs, _ := filepath.Glob(filepath.Join(packages, "libpcap", "lib", "libpcap.so*")); len(libs) > 0 {
		t.Errorf("libpcap package installs shared libraries %v; pcap links it statically", libs)
	}

	runPackaging("pcap", unpack("pcap"))
	bin := filepath.Join(packages, "pcap", "bin")
	for _, b := range []string{"pcap-agent", "pcap-api"} {
		ldd := run(t, time.Minute, "", nil, "ldd", filepath.Join(bin, b))
		if strings.Contains(ldd.stdout, "libpcap") {
			t.Errorf("%s links libpcap dynamically:\n%s", b, ldd.stdout)
		}
	}

	// The compiled agent runs and accepts a config rendered by its job.
	kp := testKeys(t, 2)
	r := mustRender(t, "pcap-agent", map[string]any{"host_key": kp[0].prop(), "authorized_keys": []any{kp[1].PublicKey}}, cellSpec, nil, "")
	cfg := strings.ReplaceAll(r.file(t, "config/agent.yml"), "/var/vcap/jobs/pcap-agent/", r.dir+"/")
	path := filepath.Join(r.dir, "compiled-check.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	must(t, time.Minute, "", nil, filepath.Join(bin, "pcap-agent"), "--config", path, "--check-config")
	must(t, time.Minute, "", nil, filepath.Join(bin, "pcap-api"), "--help")
}
