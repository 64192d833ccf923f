package capturecmd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/mattn/go-shellwords"
	"github.com/urfave/cli/v2"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// Limits of the capture command line.
const (
	MaxCommandLen = 64 << 10
	MaxTargets    = 1000
)

// Output formats.
const (
	FormatPcapng = "pcapng"
	FormatPcap   = "pcap"
)

// Request is a parsed capture command: what to capture, independent of who
// asks and of how targets are resolved.
type Request struct {
	// Targets are positional selectors, GROUP or GROUP/ID (bosh, static).
	Targets []string
	// Deployment is the BOSH deployment (-d).
	Deployment string
	// App, Process and Instances select CF app instances.
	App       string
	Process   string
	Instances []int

	Interfaces []string
	Filter     string
	Snaplen    int
	Limits     agentproto.Limits
	Format     string
	// Progress asks for periodic per-source progress lines on stderr.
	Progress bool
	// NoFollow turns off following: by default a capture of a whole app
	// process or instance group takes in instances that start while it
	// runs and lets go of those that stop.
	NoFollow bool
}

// CaptureFlags are the flags of the capture command, shared by the API's
// ssh front door and the CLIs, spelled like tcpdump and bosh pcap: the
// common ones, then the cf ones, then the bosh ones.
func CaptureFlags() []cli.Flag {
	return append(append(CommonFlags(), CFFlags()...), BOSHFlags()...)
}

// CommonFlags are the capture flags of every kind of target.
func CommonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "interface", Aliases: []string{"i"}, Usage: "capture on `IFACE` (repeatable; default eth0; \"any\" for all)"},
		&cli.StringFlag{Name: "filter", Aliases: []string{"f"}, Usage: "BPF capture `FILTER`, as tcpdump takes it"},
		&cli.IntFlag{Name: "snaplen", Aliases: []string{"s"}, Value: agentproto.DefaultSnaplen, Usage: "capture at most `BYTES` of each packet (1..262144)"},
		&cli.DurationFlag{Name: "duration", Usage: "stop after `DURATION` (e.g. 30s, 5m)", DefaultText: "0s: until stopped, at most the server's maximum"},
		&cli.Uint64Flag{Name: "count", Aliases: []string{"c"}, Usage: "stop each source after `N` packets", DefaultText: "0: unlimited"},
		&cli.Uint64Flag{Name: "max-bytes", Usage: "stop each source after `BYTES` of captured data", DefaultText: "0: unlimited"},
		&cli.StringFlag{Name: "format", Value: FormatPcapng, Usage: "output `FORMAT`: pcapng, or pcap when all sources share one link type"},
		&cli.BoolFlag{Name: "progress", Usage: "print per-source progress lines on stderr every second"},
		&cli.BoolFlag{Name: "no-follow", Usage: "capture only the instances running at the start (by default a capture of all of an app's or group's instances follows them: new ones join, stopped ones end as instance-gone)"},
	}
}

// CFFlags select Cloud Foundry app instances.
func CFFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "app", Usage: "CF app `GUID` (cf; bosh: its instances next to the VMs, for director admins)"},
		&cli.StringFlag{Name: "type", Aliases: []string{"t", "process"}, Value: DefaultProcess, Usage: "CF process `TYPE` (cf)"},
		&cli.StringFlag{Name: "instance", Usage: "CF instance `INDEXES`, comma separated (cf; default all)"},
	}
}

// BOSHFlags select the VMs of a BOSH deployment.
func BOSHFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "deployment", Aliases: []string{"d"}, Usage: "BOSH `DEPLOYMENT` (bosh)"},
	}
}

// RequestFromContext builds a Request from parsed capture flags and
// validates it; it returns every problem at once.
func RequestFromContext(c *cli.Context) (Request, error) {
	r := Request{
		Targets:    c.Args().Slice(),
		Deployment: c.String("deployment"),
		App:        c.String("app"),
		Process:    DefaultProcess,
		Interfaces: c.StringSlice("interface"),
		Filter:     c.String("filter"),
		Snaplen:    c.Int("snaplen"),
		Limits: agentproto.Limits{
			Duration: c.Duration("duration"),
			Packets:  c.Uint64("count"),
			Bytes:    c.Uint64("max-bytes"),
		},
		Format:   c.String("format"),
		Progress: c.Bool("progress"),
		NoFollow: c.Bool("no-follow"),
	}
	if len(r.Targets) == 0 {
		r.Targets = nil // one spelling of "none", for comparisons
	}
	if c.Value("type") != nil {
		// A CLI without the cf flags asks for the default.
		r.Process = c.String("type")
	}
	var errs []error
	if s := c.String("instance"); s != "" {
		idx, err := ParseIndexes(s)
		if err != nil {
			errs = append(errs, err)
		}
		r.Instances = idx
	}
	if len(r.Interfaces) == 0 {
		r.Interfaces = []string{agentproto.DefaultInterface}
	}
	if err := r.Validate(); err != nil {
		errs = append(errs, err)
	}
	return r, errors.Join(errs...)
}

// Validate checks everything that needs no resolver; it returns every
// problem at once.
func (r Request) Validate() error {
	var errs []error
	// The interface list is checked by the protocol's own rules; the other
	// fields one by one, so that every problem is reported, once.
	probe := agentproto.CaptureRequest{
		Version:    agentproto.ProtocolVersion,
		Target:     agentproto.Target{Kind: agentproto.TargetHost},
		Interfaces: r.Interfaces,
	}
	if err := probe.Normalize(); err != nil {
		errs = append(errs, err)
	}
	if err := agentproto.ValidateFilter(r.Filter); err != nil {
		errs = append(errs, err)
	}
	// The command line is UTF-8 text: what is not would not come back.
	for _, f := range []struct{ name, v string }{{"deployment", r.Deployment}, {"app", r.App}, {"process type", r.Process}, {"filter", r.Filter}} {
		if !utf8.ValidString(f.v) || strings.ContainsRune(f.v, 0) {
			errs = append(errs, fmt.Errorf("%s %q is not valid UTF-8 text", f.name, f.v))
		}
	}
	if r.Snaplen < 1 || r.Snaplen > agentproto.MaxSnaplen {
		errs = append(errs, fmt.Errorf("snaplen %d is out of range 1..%d", r.Snaplen, agentproto.MaxSnaplen))
	}
	if r.Limits.Duration < 0 {
		errs = append(errs, errors.New("duration is negative"))
	}
	if r.Format != FormatPcapng && r.Format != FormatPcap {
		errs = append(errs, fmt.Errorf("format %q is not pcapng or pcap", r.Format))
	}
	if len(r.Targets) > MaxTargets {
		errs = append(errs, fmt.Errorf("%d targets given, at most %d are allowed", len(r.Targets), MaxTargets))
	}
	for _, t := range r.Targets {
		if t == "" || len(t) > 256 || strings.ContainsAny(t, " \t\r\n\x00") || !utf8.ValidString(t) {
			errs = append(errs, fmt.Errorf("target %q is not valid", t))
		}
	}
	return errors.Join(errs...)
}

// ParseIndexes parses "0,2,5" into instance indexes.
func ParseIndexes(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		var n int
		if _, err := fmt.Sscanf(part, "%d", &n); err != nil || n < 0 || n > 100000 || fmt.Sprint(n) != part {
			return nil, fmt.Errorf("instance index %q is not a number 0..100000", part)
		}
		out = append(out, n)
	}
	return out, nil
}

// maxWordLen bounds one word of a command line: the splitter's time grows
// with the square of a word's length (a 64 KiB word takes seconds), and no
// flag value or target needs more room than a filter.
const maxWordLen = 2 * agentproto.MaxFilterLen

// longestWord returns at least the length in bytes of the longest word the
// splitter will build of line (quotes and escapes are counted). The
// splitter also keeps spaces inside `…` and $(…), and after a stray ")":
// when one of those is outside quotes, the whole line may be one word.
func longestWord(line string) int {
	longest, cur := 0, 0
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == 0 && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			cur = 0
			continue
		case quote == 0 && (c == '`' || c == '(' || c == ')'):
			return len(line)
		case c == '\\' && quote != '\'':
			i++ // the escaped byte belongs to the word
			cur++
		case quote == 0 && (c == '\'' || c == '"'):
			quote = c
		case c == quote:
			quote = 0
		}
		cur++
		longest = max(longest, cur)
	}
	return longest
}

// ErrHelp is returned by ParseCommand when the user asked for help; the
// usage was written to the output given.
var ErrHelp = errors.New("help requested")

// parseMu serializes urfave/cli runs (see ParseCommand).
var parseMu sync.Mutex

// ParseCommand parses an exec command line sent over ssh ("capture …"). It
// is split like a POSIX shell would split words (quotes, escapes), but no
// shell ever runs it: no expansion, no substitution. Usage and errors for
// the user are written to out.
func ParseCommand(line string, out io.Writer) (Request, error) {
	if len(line) > MaxCommandLen {
		return Request{}, fmt.Errorf("command line is %d bytes, at most %d are allowed", len(line), MaxCommandLen)
	}
	if strings.ContainsRune(line, 0) {
		return Request{}, errors.New("command line contains a NUL byte")
	}
	if !utf8.ValidString(line) {
		return Request{}, errors.New("command line is not valid UTF-8")
	}
	if n := longestWord(line); n > maxWordLen {
		return Request{}, fmt.Errorf("command line has a word longer than %d bytes", maxWordLen)
	}
	p := shellwords.NewParser()
	p.ParseEnv = false
	p.ParseBacktick = false
	words, err := p.Parse(line)
	if err != nil {
		return Request{}, fmt.Errorf("cannot split command line: %w", err)
	}
	if p.Position >= 0 {
		return Request{}, errors.New("command line has a shell operator (;, &, |, <, >): nothing here runs a shell")
	}
	if len(words) == 0 {
		return Request{}, errors.New(`no command given; try "capture --help"`)
	}
	if words[0] != "capture" {
		return Request{}, fmt.Errorf("unknown command %q; the only command is \"capture\" (try \"capture --help\")", words[0])
	}
	var req Request
	called := false
	var usage bytes.Buffer
	app := &cli.App{
		Name:            "capture",
		Usage:           "capture packets on many targets at once into one pcapng stream on stdout",
		UsageText:       "capture [flags] TARGET...",
		HideHelpCommand: true,
		Flags:           CaptureFlags(),
		Writer:          &usage,
		ErrWriter:       &usage,
		Action: func(c *cli.Context) error {
			called = true
			var err error
			req, err = RequestFromContext(c)
			return err
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	// Every cli.App shares the package-level cli.HelpFlag, which Run
	// writes to: concurrent captures must not run apps at once.
	parseMu.Lock()
	err = app.Run(append(words[:1], Interspersed(app.Flags, words[1:])...))
	parseMu.Unlock()
	if err != nil {
		return Request{}, err
	}
	if !called {
		// urfave/cli answered --help (or -h) itself.
		out.Write(usage.Bytes())
		return Request{}, ErrHelp
	}
	return req, nil
}

// Interspersed moves positional arguments after the flags, so flags may
// follow them ("capture router -f 'port 443'"), as users of tcpdump and
// the bosh CLI expect; urfave/cli stops at the first positional. A "--"
// ends the flags; what follows stays positional. With a help flag (-h,
// --help) the positionals are dropped: urfave/cli would take them for help
// topics and fail instead of showing the usage. A flag that needs a value
// but ends the line stays last, for the parser to refuse.
func Interspersed(flags []cli.Flag, args []string) []string {
	takesValue := map[string]bool{}
	for _, f := range flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var opts, pos []string
	help := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			opts = append(opts, a)
			name := strings.TrimLeft(a, "-")
			if name == "h" || name == "help" {
				help = true
			}
			if !strings.Contains(name, "=") && takesValue[name] {
				if i+1 == len(args) {
					// A value flag last, with no value: leave it last, so
					// the parser says it needs an argument instead of
					// taking the "--" added below for its value.
					return opts
				}
				i++
				opts = append(opts, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) == 0 || help {
		return opts
	}
	return append(append(opts, "--"), pos...)
}
