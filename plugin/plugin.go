// Package plugin is the cf CLI plugin `cf pcap`: it captures the traffic of
// every instance of an app through pcap-api, using the cf CLI's target and
// access token.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	cfplugin "code.cloudfoundry.org/cli/v8/plugin"
	"github.com/urfave/cli/v2"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor"
)

// Version is the plugin's version, set at build time.
var Version = "0.1.0"

// Plugin implements the cf CLI plugin interface.
type Plugin struct {
	// Stdout, Stderr and Env default to the process's own.
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Exit ends the plugin with a status (default os.Exit).
	Exit func(int)
	// Getppid returns the parent's PID, watched to stop the capture when
	// the cf CLI goes away (default os.Getppid).
	Getppid func() int
}

const helpText = "Capture the network traffic of all instances of an app into one pcapng file (Wireshark)"

const usage = `cf pcap APP_NAME [-i INDEXES] [-t TYPE] [-f FILTER] [--interface IFACE]
   [-s SNAPLEN] [--duration D] [-c COUNT] [--max-bytes N] [--format pcapng|pcap] -o FILE|- [--force]
   [--rotate-size SIZE] [--rotate-every D] [--rotate-files N]
   [--pcap-api HOST[:PORT]] [--pcap-api-host-key-fingerprint SHA256:…] [--trust-on-first-use]`

// Standalone answers when the plugin binary is run by hand instead of by
// the cf CLI (which passes its RPC port first): --version, --help, or a
// hint. ok is false when the cf CLI runs it.
func Standalone(args []string, version string, stdout, stderr io.Writer) (code int, ok bool) {
	if len(args) > 0 && args[0] != "" && strings.Trim(args[0], "0123456789") == "" {
		return 0, false // the cf CLI's RPC port
	}
	switch {
	case len(args) == 1 && (args[0] == "--version" || args[0] == "-v" || args[0] == "version"):
		fmt.Fprintf(stdout, "pcap-cf-plugin version %s\n", version)
		return 0, true
	case len(args) == 1 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help"):
		fmt.Fprint(stdout, standaloneHelp)
		return 0, true
	default:
		fmt.Fprint(stderr, standaloneHelp)
		return 1, true
	}
}

const standaloneHelp = `pcap-cf-plugin is a cf CLI plugin; the cf CLI runs it. Install it with
   cf install-plugin PATH/TO/pcap-cf-plugin
then run
   cf pcap APP_NAME -o FILE
and see cf help pcap.
`

// GetMetadata implements cfplugin.Plugin.
func (p *Plugin) GetMetadata() cfplugin.PluginMetadata {
	var major, minor, build int
	fmt.Sscanf(Version, "%d.%d.%d", &major, &minor, &build)
	options := map[string]string{
		"i":                              "Instance indexes, comma separated (default: all); -i is the instance, as in cf ssh (in pcap-bosh, -i is the interface)",
		"-process":                       "Process type, as cf ssh --process (default: web; -t for short)",
		"f":                              "BPF capture filter, as tcpdump takes it",
		"-interface":                     "Interface in the container (default: eth0; repeatable; lo for the app's plaintext behind envoy)",
		"s":                              "Bytes to capture per packet, 1..262144 (default: 65535)",
		"-duration":                      "Stop after this long (e.g. 30s, 5m; default: until Ctrl-C, at most pcap-api's maximum)",
		"c":                              "Stop each instance after this many packets (default: 0, unlimited)",
		"-max-bytes":                     "Stop each instance after this many bytes of captured data (default: 0, unlimited)",
		"-format":                        "pcapng (default) or pcap",
		"o":                              "Output file, or - for stdout",
		"-force":                         "Replace an existing regular output file (not a symbolic link) once the capture has started",
		"-no-follow":                     "Capture only the instances running at the start; without -i the capture follows the app (new instances join, stopped ones end as instance-gone)",
		"-pcap-api":                      "pcap-api address host[:port] (default: $PCAP_API, or derived from the cf API)",
		"-pcap-api-host-key-fingerprint": "Pin pcap-api's SSH host key (SHA256:…; default: $PCAP_API_HOST_KEY_FINGERPRINT, else a key recorded by --trust-on-first-use)",
		"-trust-on-first-use":            "Accept and record pcap-api's host key if none is pinned or recorded yet (prints its fingerprint)",
	}
	for _, f := range frontdoor.RotationFlags() {
		options["-"+f.Names()[0]] = strings.ReplaceAll(f.(cli.DocGenerationFlag).GetUsage(), "`", "")
	}
	return cfplugin.PluginMetadata{
		Name:    "pcap",
		Version: cfplugin.VersionType{Major: major, Minor: minor, Build: build},
		Commands: []cfplugin.Command{{
			Name:     "pcap",
			HelpText: helpText,
			UsageDetails: cfplugin.Usage{
				Usage: usage + `

EXAMPLES:
   cf pcap myapp -o myapp.pcapng
   cf pcap myapp -i 0,2 -f 'tcp port 8080' -o web.pcapng
   cf pcap myapp -o - | wireshark -k -i -
   cf pcap myapp --interface lo -f 'tcp port 8080' -o plain.pcapng
   cf pcap myapp --rotate-every 10m --rotate-files 6 -o myapp.pcapng

   Without -i the capture follows the app: instances that start while it
   runs join as new interfaces (a restarted one as web/N#2), stopped
   ones end as instance-gone; --no-follow keeps the starting set.
   With route integrity (envoy in the container), eth0 carries TLS and
   the app's plaintext is on lo: capture --interface lo.
   Stop with Ctrl-C: the file is completed with statistics blocks.
   pcap-api is found at --pcap-api, $PCAP_API, or by replacing the first
   label of the cf API host with "pcap" (api.sys.example.com ->
   pcap.sys.example.com:2222).

` + frontdoor.RotationHelp,
				Options: options,
			},
		}},
	}
}

// Run implements cfplugin.Plugin.
func (p *Plugin) Run(conn cfplugin.CliConnection, args []string) {
	if len(args) == 0 || args[0] != "pcap" {
		return // CLI-MESSAGE-UNINSTALL and others
	}
	stdout, stderr, getenv, exit := p.Stdout, p.Stderr, p.Getenv, p.Exit
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	if exit == nil {
		exit = os.Exit
	}
	code := p.run(conn, args, stdout, stderr, getenv)
	exit(code)
}

func (p *Plugin) run(conn cfplugin.CliConnection, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 2 && (args[1] == "--version" || args[1] == "-v") {
		// What `cf plugins` shows is the plugin's metadata version;
		// this is the build's (git describe).
		fmt.Fprintf(stdout, "cf pcap version %s\n", Version)
		return 0
	}
	var o options
	app := &cli.App{
		Name:            "cf pcap",
		Usage:           helpText,
		UsageText:       usage,
		HideHelpCommand: true,
		Writer:          stderr,
		ErrWriter:       stderr,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "instance", Aliases: []string{"i"}, Destination: &o.instances},
			&cli.StringFlag{Name: "process", Aliases: []string{"t", "type"}, Value: capturecmd.DefaultProcess, Destination: &o.ptype},
			&cli.StringFlag{Name: "filter", Aliases: []string{"f"}, Destination: &o.filter},
			&cli.StringSliceFlag{Name: "interface"},
			&cli.IntFlag{Name: "snaplen", Aliases: []string{"s"}, Value: agentproto.DefaultSnaplen, Destination: &o.snaplen},
			&cli.DurationFlag{Name: "duration", Destination: &o.duration},
			&cli.Uint64Flag{Name: "count", Aliases: []string{"c"}, Destination: &o.count},
			&cli.Uint64Flag{Name: "max-bytes", Destination: &o.maxBytes},
			&cli.StringFlag{Name: "format", Value: capturecmd.FormatPcapng, Destination: &o.format},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Destination: &o.output},
			&cli.BoolFlag{Name: "force", Destination: &o.force},
			&cli.BoolFlag{Name: "no-follow", Destination: &o.noFollow},
			&cli.StringFlag{Name: "pcap-api", EnvVars: []string{"PCAP_API"}, Destination: &o.apiAddr},
			&cli.StringFlag{Name: "pcap-api-host-key-fingerprint", EnvVars: []string{"PCAP_API_HOST_KEY_FINGERPRINT"}, Destination: &o.fingerprint},
			&cli.BoolFlag{Name: "trust-on-first-use", Destination: &o.tofu},
		}, frontdoor.RotationFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("give exactly one app name\nUSAGE:\n   %s", usage)
			}
			o.app = c.Args().First()
			o.interfaces = c.StringSlice("interface")
			var err error
			o.rotate, err = frontdoor.RotationFromContext(c)
			return err
		},
		ExitErrHandler: func(*cli.Context, error) {},
		// The cf CLI shows the help (cf help pcap, cf pcap --help); a bad
		// flag gets one line, not a help page.
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			if strings.HasSuffix(err.Error(), "flag provided but not defined: -w") {
				return fmt.Errorf("%w (to write a file, use -o FILE; see cf help pcap)", err)
			}
			return fmt.Errorf("%w (see cf help pcap)", err)
		},
	}
	if err := app.Run(append([]string{"cf pcap"}, capturecmd.Interspersed(app.Flags, args[1:])...)); err != nil {
		fmt.Fprintln(stderr, "FAILED:", err)
		return 1
	}
	if o.app == "" {
		return 0 // --help was shown
	}
	// Ctrl-C, SIGTERM and SIGHUP stop the capture and finish the file, and
	// so does the cf CLI going away: killed by SIGTERM, it leaves its
	// plugin behind without a signal.
	ctx, release := frontdoor.StopContext(context.Background(), stderr, &frontdoor.ParentWatch{Parent: "the cf CLI", Getppid: p.Getppid})
	defer release()
	status, err := o.capture(ctx, conn, stdout, stderr, getenv)
	if err != nil {
		fmt.Fprintln(stderr, "FAILED:", err)
		if status <= 0 {
			return capturecmd.ExitFailed
		}
	}
	return status
}

type options struct {
	app, instances, ptype, filter, format, output string
	interfaces                                    []string
	snaplen                                       int
	duration                                      time.Duration
	count, maxBytes                               uint64
	force, tofu, noFollow                         bool
	apiAddr, fingerprint                          string
	rotate                                        frontdoor.Rotation
}

func (o *options) capture(ctx context.Context, conn cfplugin.CliConnection, stdout, stderr io.Writer, getenv func(string) string) (int, error) {
	// Everything that needs no network is checked first.
	req, err := o.request()
	if err != nil {
		return 1, err
	}
	if err := o.rotate.CheckOutput(o.output, o.format, o.force); err != nil {
		return 1, err
	}
	endpoint, err := conn.ApiEndpoint()
	if err != nil {
		return 1, fmt.Errorf("ask the cf CLI for its API: %w", err)
	}
	if endpoint == "" {
		return 1, errors.New("no cf API targeted (cf api, cf login)")
	}
	token, err := conn.AccessToken()
	if err != nil {
		return 1, fmt.Errorf("not logged in (cf login): %w", err)
	}
	if token == "" {
		return 1, errors.New("not logged in (cf login)")
	}
	token = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(token, "bearer "), "Bearer "))
	space, err := conn.GetCurrentSpace()
	if err != nil || space.Guid == "" {
		return 1, errors.New("no space targeted (cf target -o ORG -s SPACE)")
	}
	insecure, _ := conn.IsSSLDisabled()
	guid, err := findApp(ctx, endpoint, token, space.Guid, o.app, insecure)
	if err != nil {
		return 1, err
	}
	addr := o.apiAddr
	if addr == "" {
		if addr, err = deriveAPIAddr(endpoint); err != nil {
			return 1, err
		}
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "2222")
	}
	login, hostKeys, err := o.login(ctx, conn, endpoint, insecure, stderr, getenv)
	if err != nil {
		return 1, err
	}

	req.App = guid
	if len(o.interfaces) == 0 {
		fmt.Fprintln(stderr, envoyHint)
	}
	return frontdoor.Run(ctx, frontdoor.Options{
		Addr:     addr,
		Config:   login,
		HostKeys: hostKeys,
		Request:  req,
		Output:   o.output,
		Force:    o.force,
		Rotate:   o.rotate,
		Stdout:   stdout,
		Stderr:   stderr,
		Terminal: frontdoor.IsTerminal(stderr),
	})
}

// envoyHint is printed when the user names no interface: eth0 is the
// default, and on foundations with route integrity it carries only envoy's
// TLS. Naming an interface, eth0 included, silences it.
const envoyHint = "pcap: hint: with route integrity, eth0 carries TLS; the app's plaintext is on lo (--interface lo)"

// request is the capture the options ask for, checked locally; the app
// GUID is filled in once the app is found.
func (o *options) request() (capturecmd.Request, error) {
	r := capturecmd.Request{
		Process:    o.ptype,
		Interfaces: o.interfaces,
		Filter:     o.filter,
		Snaplen:    o.snaplen,
		Limits:     agentproto.Limits{Duration: o.duration, Packets: o.count, Bytes: o.maxBytes},
		Format:     o.format,
		NoFollow:   o.noFollow,
	}
	if len(r.Interfaces) == 0 {
		r.Interfaces = []string{agentproto.DefaultInterface}
	}
	var errs []error
	if o.instances != "" {
		idx, err := capturecmd.ParseIndexes(o.instances)
		if err != nil {
			errs = append(errs, err)
		}
		r.Instances = idx
	}
	if err := r.Validate(); err != nil {
		errs = append(errs, err)
	}
	return r, errors.Join(errs...)
}

// deriveAPIAddr turns https://api.sys.example.com into
// pcap.sys.example.com:2222.
func deriveAPIAddr(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("cannot derive the pcap-api address from %q: give --pcap-api", endpoint)
	}
	host := u.Hostname()
	if _, rest, ok := strings.Cut(host, "."); ok && net.ParseIP(host) == nil {
		return net.JoinHostPort("pcap."+rest, "2222"), nil
	}
	return "", fmt.Errorf("cannot derive the pcap-api address from %q: give --pcap-api", endpoint)
}

// findApp looks the app up by name in the targeted space with the Cloud
// Controller v3 API (the plugin RPC's GetApp uses v2, which newer
// installations no longer serve).
func findApp(ctx context.Context, endpoint, token, spaceGUID, name string, insecure bool) (string, error) {
	q := url.Values{"names": {name}, "space_guids": {spaceGUID}}
	var list struct {
		Resources []struct {
			GUID string `json:"guid"`
		} `json:"resources"`
	}
	// One app's page is small; 4 MiB bounds a Cloud Controller gone wrong.
	if err := cloudController(httpClient(insecure), 4<<20).Get(ctx, strings.TrimRight(endpoint, "/")+"/v3/apps?"+q.Encode(), token, &list); err != nil {
		return "", fmt.Errorf("look up app %s: %w", name, err)
	}
	if len(list.Resources) == 0 {
		return "", fmt.Errorf("app %s not found in the targeted space", name)
	}
	return list.Resources[0].GUID, nil
}
