// Package boshcli is pcap-bosh, the operators' CLI: it captures on VMs of
// a BOSH deployment through pcap-api, with the bosh CLI's environment and
// login, spelled like `bosh pcap` and `bosh ssh`.
package boshcli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/bosh/allproxy"
	"code.cloudfoundry.org/pcap/bosh/director"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor"
)

// ExitError carries an exit status out of the app.
type ExitError struct {
	Status int
	Err    error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Status)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// IO is where the app reads and writes; tests pass buffers.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// StdinTerminal says whether questions can be asked.
	StdinTerminal  bool
	StderrTerminal bool
}

// App returns the pcap-bosh CLI.
func App(iot IO) *cli.App {
	common := []cli.Flag{
		&cli.StringFlag{Name: "environment", Aliases: []string{"e"}, EnvVars: []string{"BOSH_ENVIRONMENT"}, Usage: "director `ALIAS` or URL"},
		&cli.StringFlag{Name: "config", EnvVars: []string{"BOSH_CONFIG"}, Usage: "bosh CLI config `FILE` (default ~/.bosh/config)"},
		&cli.StringFlag{Name: "ca-cert", EnvVars: []string{"BOSH_CA_CERT"}, Usage: "director CA certificate (`PATH` or PEM)"},
		&cli.StringFlag{Name: "client", EnvVars: []string{"BOSH_CLIENT"}, Usage: "UAA client for client-credentials login"},
		&cli.StringFlag{Name: "client-secret", EnvVars: []string{"BOSH_CLIENT_SECRET"}, Usage: "its secret"},
		&cli.StringFlag{Name: "pcap-api", EnvVars: []string{"PCAP_API"}, Usage: "pcap-api `HOST[:PORT]` (port 2222 by default)"},
	}
	common = append(common, loginFlags()...)
	flags := append([]cli.Flag{}, common...)
	for _, f := range append(append(capturecmd.CommonFlags(), capturecmd.BOSHFlags()...), capturecmd.CFFlags()...) {
		switch f.Names()[0] {
		case "progress":
			continue // set by the client itself
		case "deployment":
			f.(*cli.StringFlag).EnvVars = []string{"BOSH_DEPLOYMENT"}
		case "interface":
			f.(*cli.StringSliceFlag).Usage += "; -i is the interface, as in tcpdump (in cf pcap, -i is the instance)"
		case "app":
			f.(*cli.StringFlag).Usage = "also capture the instances of CF app `GUID` (one app; 'cf app NAME --guid' prints it), " +
				"named like cf pcap names them (web/0); pcap-api looks it up with its own Cloud Controller client; for admins of the whole director only"
		case "type":
			f.(*cli.StringFlag).Usage = "with --app: the app's process `TYPE`"
		case "instance":
			f.(*cli.StringFlag).Usage = "with --app: the app's instance `INDEXES`, comma separated (default all)"
		}
		flags = append(flags, f)
	}
	flags = append(flags,
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the capture to `FILE` (- for stdout)"},
		&cli.BoolFlag{Name: "force", Usage: "replace an existing regular output file (never a symbolic link) once the capture has started"},
		&cli.BoolFlag{Name: "non-interactive", Aliases: []string{"n"}, EnvVars: []string{"BOSH_NON_INTERACTIVE"}, Usage: "do not ask for confirmation"},
		&cli.IntFlag{Name: "confirm-over", Value: 10, Usage: "ask before capturing on more than `N` VMs"},
	)
	flags = append(flags, frontdoor.RotationFlags()...)
	app := &cli.App{
		Name:      "pcap-bosh",
		Usage:     "capture packets on many VMs of a BOSH deployment into one pcapng file",
		UsageText: "pcap-bosh -e ENV -d DEPLOYMENT [GROUP[/ID]...] [--app GUID] [-i IFACE] [-f FILTER] -o FILE|- [flags]\n   pcap-bosh -e ENV ssh-code",
		Flags:     flags,
		Reader:    iot.Stdin, Writer: iot.Stderr, ErrWriter: iot.Stderr,
		HideHelpCommand: true,
		Version:         Version,
		// One line for a bad flag, not the whole help page twice.
		OnUsageError:          func(_ *cli.Context, err error, _ bool) error { return usageError(err) },
		CustomAppHelpTemplate: cli.AppHelpTemplate + examples + "\n" + frontdoor.RotationHelp,
		Action:                func(c *cli.Context) error { return capture(c, iot) },
		Commands: []*cli.Command{{
			Name:   "ssh-code",
			Usage:  "print a one-time code of the director's UAA to use as password with plain ssh or sshdump",
			Flags:  common,
			Action: func(c *cli.Context) error { return sshCode(c, iot) },
		}},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	return app
}

// Version is what --version prints; pcap-bosh's main sets it.
var Version = "dev"

// examples end the help page.
const examples = `
EXAMPLES:
   pcap-bosh -e prod -d cf router -o router.pcapng
   pcap-bosh -e prod -d cf -f 'port 53' -o cf.pcapng      (every VM of cf; asks over --confirm-over)
   pcap-bosh -e prod -d cf router diego-cell/3f2a -f 'port 443' -c 1000 -o edge.pcapng
   pcap-bosh -e prod -d cf router -o - | wireshark -k -i -
   pcap-bosh -e prod -d cf router --rotate-size 100MB --rotate-files 10 -o router.pcapng
   pcap-bosh -e prod -d cf router --app "$(cf app myapp --guid)" -o both-sides.pcapng
   pcap-bosh -e prod ssh-code

   BOSH_ALL_PROXY=ssh+socks5://jumpbox@34.1.2.3:22?private-key=jb.key pcap-bosh -e prod -d cf router -o r.pcapng

   A group named without an ID, or a whole deployment, is followed: VMs
   added while the capture runs join, deleted ones end as instance-gone
   (--no-follow: not).
   -e and -d default to $BOSH_ENVIRONMENT and $BOSH_DEPLOYMENT, as in the bosh CLI.
   With no GROUP, every VM of the deployment is captured (as bosh pcap -d does).
   $BOSH_ALL_PROXY (socks5://HOST:PORT or ssh+socks5://USER@HOST:PORT?private-key=FILE,
   as the bosh CLI takes it, e.g. from bbl print-env) carries every connection:
   the director, its UAA and pcap-api.
   Stop with Ctrl-C: the file is completed with statistics blocks.
`

// usageError is how a flag the command line gets wrong is reported: once,
// with the way to the help, and with tcpdump's -w turned into -o.
func usageError(err error) error {
	if strings.HasSuffix(err.Error(), "flag provided but not defined: -w") {
		return fmt.Errorf("%w (to write a file, use -o FILE; see pcap-bosh --help)", err)
	}
	return fmt.Errorf("%w (see pcap-bosh --help)", err)
}

// Run runs the app with args (without the program name) and returns the
// exit status, printing errors on iot.Stderr.
func Run(iot IO, args []string) int {
	app := App(iot)
	if len(args) > 0 && args[0] == "help" {
		// "pcap-bosh help [ssh-code]", as the bosh CLI has it.
		args = append(args[1:], "--help")
	}
	if !contains(args, "ssh-code") {
		args = capturecmd.Interspersed(app.Flags, args)
	}
	err := app.Run(append([]string{"pcap-bosh"}, args...))
	var ee *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.Err != nil {
			fmt.Fprintln(iot.Stderr, "pcap-bosh:", ee.Err)
		}
		return ee.Status
	default:
		fmt.Fprintln(iot.Stderr, "pcap-bosh:", err)
		return 1
	}
}

// common reads a flag that both the app and its ssh-code command define,
// so that `pcap-bosh -e ENV ssh-code` and `pcap-bosh ssh-code -e ENV` both
// work: urfave/cli would read the command's own flag, unset when the flag
// came before the command name. A value given on the command line (one
// that differs from the environment variable's, and is not empty) wins,
// the innermost first.
func common(c *cli.Context, name string) string {
	base := ""
	for _, f := range c.App.Flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Name == name {
			for _, e := range sf.EnvVars {
				if v, ok := os.LookupEnv(e); ok {
					base = v
					break
				}
			}
		}
	}
	for _, x := range c.Lineage() {
		if v := x.String(name); v != base && v != "" {
			return v
		}
	}
	return base
}

type session struct {
	proxy      *allproxy.Dialer
	env        *Env
	token      string
	addr       string
	codeClient string
	hostKeys   *frontdoor.HostKeys
	codeErr    error // why no one-time code could be had
}

// connect resolves the environment and gets a token; with api set, also
// pcap-api's address and how its host key is checked.
// The caller closes the session.
func connect(ctx context.Context, c *cli.Context, stderr io.Writer, api bool) (*session, error) {
	// BOSH_ALL_PROXY is checked (its key file read) before anything is
	// contacted.
	proxy, err := allproxy.FromEnvironment()
	if err != nil {
		return nil, err
	}
	env, err := ResolveEnv(EnvOptions{
		Environment: common(c, "environment"), ConfigPath: common(c, "config"), CACert: common(c, "ca-cert"),
		Client: common(c, "client"), ClientSecret: common(c, "client-secret"),
		DialContext: proxy.DialContext,
	})
	if err != nil {
		return nil, err
	}
	s := &session{proxy: proxy, env: env, codeClient: common(c, "code-client")}
	if s.token, err = env.Token(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("get a token for %s: %w", env.URL, err)
	}
	if s.codeClient == "" {
		s.codeClient = DefaultCodeClient
	}
	if !api {
		return s, nil
	}
	s.addr = common(c, "pcap-api")
	if s.addr == "" {
		s.Close()
		return nil, errors.New("no pcap-api address: give --pcap-api HOST[:PORT] or set PCAP_API")
	}
	if _, _, err := net.SplitHostPort(s.addr); err != nil {
		s.addr = net.JoinHostPort(s.addr, "2222")
	}
	if s.hostKeys, err = hostKeys(c, stderr); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close ends the session's connections: idle ones to the director and
// UAA, and the jumpbox's.
func (s *session) Close() {
	s.env.HTTP.CloseIdleConnections()
	s.proxy.Close()
}

// explain replaces the ssh client's "unable to authenticate" (pcap-api
// tells the reason only in a banner, which the tunnel client does not
// show) with the likely reason, found from the token's claims and the
// director's /info.
func (s *session) explain(ctx context.Context, err error) error {
	if s.codeErr != nil {
		return s.codeErr
	}
	if !strings.Contains(err.Error(), "ssh: unable to authenticate") {
		return err
	}
	return fmt.Errorf("pcap-api at %s refused the login: %s", s.addr, s.env.Diagnose(ctx, s.token))
}

// sshCode prints a one-time code of the director's UAA. pcap-api is not
// involved: any of its instances exchanges the code.
func sshCode(c *cli.Context, iot IO) error {
	ctx := c.Context
	s, err := connect(ctx, c, iot.Stderr, false)
	if err != nil {
		return &ExitError{Status: 1, Err: err}
	}
	defer s.Close()
	code, err := s.oneTimeCode(ctx)
	if err != nil {
		return &ExitError{Status: 1, Err: err}
	}
	fmt.Fprintln(iot.Stdout, code)
	return nil
}

func capture(c *cli.Context, iot IO) error {
	dep := c.String("deployment")
	if dep == "" {
		return &ExitError{Status: 1, Err: errors.New("no deployment given: -d DEPLOYMENT, or set BOSH_DEPLOYMENT")}
	}
	if c.String("output") == "" {
		return &ExitError{Status: 1, Err: errors.New("no output given: -o FILE, or -o - to write the capture to stdout")}
	}
	if c.String("app") == "" && (c.IsSet("type") || c.IsSet("instance")) {
		return &ExitError{Status: 1, Err: errors.New("--type and --instance pick the instances of --app GUID; name VMs as GROUP/INDEX or GROUP/ID")}
	}
	// Everything that needs no network is checked first.
	req, err := capturecmd.RequestFromContext(c)
	if err != nil {
		return &ExitError{Status: 1, Err: err}
	}
	rot, err := frontdoor.RotationFromContext(c)
	if err != nil {
		return &ExitError{Status: 1, Err: err}
	}
	if err := rot.CheckOutput(c.String("output"), req.Format, c.Bool("force")); err != nil {
		return &ExitError{Status: 1, Err: err}
	}
	// Ctrl-C, SIGTERM and SIGHUP (the terminal closing) stop the capture
	// and finish the file.
	ctx, stop := frontdoor.StopContext(c.Context, iot.Stderr, nil)
	defer stop()
	s, err := connect(ctx, c, iot.Stderr, true)
	if err != nil {
		return &ExitError{Status: 1, Err: err}
	}
	defer s.Close()
	if err := confirm(ctx, c, iot, s, dep); err != nil {
		return &ExitError{Status: 1, Err: err}
	}

	status, err := frontdoor.Run(ctx, frontdoor.Options{
		Addr: s.addr,
		Config: tunnel.ClientConfig{User: "bosh", Auth: []ssh.AuthMethod{s.auth(ctx)}, HostKeyCallback: s.hostKeys.Callback(),
			DialContext: s.proxy.DialContext},
		HostKeys: s.hostKeys,
		Request:  req,
		Output:   c.String("output"), Force: c.Bool("force"), Rotate: rot,
		Stdout: iot.Stdout, Stderr: iot.Stderr, Terminal: iot.StderrTerminal,
	})
	if err != nil {
		return &ExitError{Status: max(status, 1), Err: s.explain(ctx, err)}
	}
	if status != 0 {
		return &ExitError{Status: status}
	}
	return nil
}

// confirm lists the VMs and asks before capturing on more than
// --confirm-over of them, unless -n.
func confirm(ctx context.Context, c *cli.Context, iot IO, s *session, dep string) error {
	if c.Bool("non-interactive") {
		return nil
	}
	all, err := s.env.Director.Instances(ctx, s.token, dep)
	if err != nil {
		return fmt.Errorf("list instances of %s: %w", dep, err)
	}
	picked, _, err := director.Select(all, c.Args().Slice())
	if err != nil {
		return err
	}
	if len(picked) <= c.Int("confirm-over") {
		return nil
	}
	names := make([]string, len(picked))
	for i, in := range picked {
		names[i] = fmt.Sprintf("  %s (%s)", in.Name(), strings.Join(in.IPs, ", "))
	}
	if !iot.StdinTerminal {
		return fmt.Errorf("capturing on %d VMs needs confirmation; run with -n to capture on all of them:\n%s", len(picked), strings.Join(names, "\n"))
	}
	fmt.Fprintf(iot.Stderr, "Capture on these %d VMs of %s?\n%s\nContinue? [yN]: ", len(picked), dep, strings.Join(names, "\n"))
	answer, _ := bufio.NewReader(iot.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return errors.New("stopped: not confirmed")
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
