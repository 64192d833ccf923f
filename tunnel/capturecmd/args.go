package capturecmd

import (
	"strconv"
	"strings"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// DefaultProcess is the CF process type captured when none is given.
const DefaultProcess = "web"

// Args returns the capture command's words after "capture" that
// [ParseCommand] turns back into r: the exact inverse of parsing, for
// every request that validates. A field at its default is left out, so a
// CLI's command line (and pcap-api's audit log) names only what the user
// chose; targets follow a "--", so none is taken for a flag.
func (r Request) Args() []string {
	var a []string
	add := func(name, v string) { a = append(a, "--"+name, v) }
	if r.Deployment != "" {
		add("deployment", r.Deployment)
	}
	if r.App != "" {
		add("app", r.App)
	}
	if r.Process != DefaultProcess {
		add("type", r.Process)
	}
	if len(r.Instances) > 0 {
		idx := make([]string, len(r.Instances))
		for i, n := range r.Instances {
			idx[i] = strconv.Itoa(n)
		}
		add("instance", strings.Join(idx, ","))
	}
	if len(r.Interfaces) != 1 || r.Interfaces[0] != agentproto.DefaultInterface {
		for _, i := range r.Interfaces {
			add("interface", i)
		}
	}
	if r.Filter != "" {
		add("filter", r.Filter)
	}
	if r.Snaplen != agentproto.DefaultSnaplen {
		add("snaplen", strconv.Itoa(r.Snaplen))
	}
	if r.Limits.Duration != 0 {
		add("duration", r.Limits.Duration.String())
	}
	if r.Limits.Packets != 0 {
		add("count", strconv.FormatUint(r.Limits.Packets, 10))
	}
	if r.Limits.Bytes != 0 {
		add("max-bytes", strconv.FormatUint(r.Limits.Bytes, 10))
	}
	if r.Format != FormatPcapng {
		add("format", r.Format)
	}
	if r.Progress {
		a = append(a, "--progress")
	}
	if r.NoFollow {
		a = append(a, "--no-follow")
	}
	if len(r.Targets) > 0 {
		a = append(append(a, "--"), r.Targets...)
	}
	return a
}

// Line returns the whole command line that asks pcap-api for r:
// "capture" and r's [Request.Args], quoted for [ParseCommand].
func (r Request) Line() string {
	return Quote(append([]string{"capture"}, r.Args()...))
}

// Quote joins words into one command line that [ParseCommand]'s
// POSIX-style word splitter splits back into the same words.
func Quote(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.IndexFunc(w, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:,=@+%", r))
		}) < 0 {
			q[i] = w
			continue
		}
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
