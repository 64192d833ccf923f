package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/fakes/cc"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/tunnel"
)

// cf runs the Cloud Foundry part: fake UAA and Cloud Controller on
// loopback, two cells (agents on 127.0.0.10 and 127.0.0.11, in this
// namespace like on a Diego cell), two app instances in container
// namespaces, a pcap-api with the cf resolver, and the real cf CLI with
// the plugin: cf pcap demo-app.
func (d *demo) cf(ctx context.Context, cfBin, out string, seconds int) error {
	if _, err := os.Stat(cfBin); err != nil {
		return fmt.Errorf("the cf CLI is not at %s: run `make tools` (or pass -cf-out \"\")", cfBin)
	}
	step("cf: starting a fake UAA and Cloud Controller on loopback")
	const devID = "d0000000-0000-4000-8000-00000000de00"
	u, err := uaa.New(uaa.Options{
		Users:   []uaa.User{{Username: "developer", Password: "developer-pw", ID: devID, Scopes: []string{"openid", "cloud_controller.read", "cloud_controller.write"}}},
		Clients: uaa.DefaultClients(),
	})
	if err != nil {
		return err
	}
	if err := u.Start("127.0.0.1:0"); err != nil {
		return err
	}
	defer u.Close()

	hosts := []string{"127.0.0.10", "127.0.0.11"}
	port, err := freePort(hosts)
	if err != nil {
		return err
	}
	const org, space, app = "0a000000-0000-4000-8000-00000000de00", "5a000000-0000-4000-8000-00000000de00", "aa000000-0000-4000-8000-00000000de00"
	var instances []cc.Instance
	var containers []*netlab.Netns
	// Each cell publishes its containers' network namespaces the way
	// cf-networking does on a Diego cell: bind mounts named by instance
	// GUID in the cell's netns directory (containers.netns_dir).
	netnsDirs := make([]string, len(hosts))
	for i := range hosts {
		dir, err := os.MkdirTemp(string(d.dir), fmt.Sprintf("cell%d-container-netns-", i))
		if err != nil {
			return err
		}
		netnsDirs[i] = dir
	}
	step("cf: making two app instance containers (namespaces), bind-mounted by instance GUID")
	for i, h := range hosts {
		guid := fmt.Sprintf("1a000000-0000-4000-8000-00000000de%02d", i)
		c, err := d.lab.Netns()
		if err != nil {
			return err
		}
		peer, err := d.lab.Netns()
		if err != nil {
			return err
		}
		if err := netlab.Link(c, "eth0", "198.18.1.2/24", peer, "eth0", "198.18.1.1/24"); err != nil {
			return err
		}
		if err := d.lab.BindNetns(c, netnsDirs[i], guid); err != nil {
			return err
		}
		containers = append(containers, c)
		instances = append(instances, cc.Instance{Index: i, State: "RUNNING", Host: h, InstanceGUID: guid})
	}
	ccs, err := cc.New(cc.Options{
		Verifier: u.Verifier(nil), UAAURL: u.URL(),
		World: cc.World{
			Users: []cc.User{{GUID: devID, Username: "developer"}},
			Organizations: []cc.Org{{GUID: org, Name: "demo-org", Spaces: []cc.Space{{GUID: space, Name: "demo-space",
				Apps: []cc.App{{GUID: app, Name: "demo-app", Processes: []cc.Process{{Type: "web", Instances: instances}}}}}}}},
			Roles: []cc.Role{
				{Type: cc.RoleOrgUser, User: devID, Organization: org},
				{Type: cc.RoleSpaceDeveloper, User: devID, Space: space},
			},
		},
	})
	if err != nil {
		return err
	}
	if err := ccs.Start("127.0.0.1:0"); err != nil {
		return err
	}
	defer ccs.Close()

	step("cf: starting a pcap-agent on each cell (127.0.0.10, 127.0.0.11 port %d)", port)
	_, apiClientFile, authorized, err := d.dir.KeyPair("cf_api_client_key", "cf_agent_authorized_keys")
	if err != nil {
		return err
	}
	var hostKeys strings.Builder
	for i, h := range hosts {
		hk, hkFile, err := d.dir.Key(fmt.Sprintf("cell%d_host_key", i))
		if err != nil {
			return err
		}
		hostKeys.Write(ssh.MarshalAuthorizedKey(hk.PublicKey()))
		cfg, err := d.dir.Write(fmt.Sprintf("cell%d.yml", i), fmt.Sprintf("listen: %q\nhost_key_file: %q\nauthorized_keys_file: %q\ncontainers:\n  netns_dir: %q\n",
			net.JoinHostPort(h, strconv.Itoa(port)), hkFile, authorized, netnsDirs[i]))
		if err != nil {
			return err
		}
		p, err := d.start(netlab.StartOptions{}, filepath.Join(d.bin, "pcap-agent"), "--config", cfg)
		if err != nil {
			return err
		}
		if _, err := p.WaitLine(agentReady, 20*time.Second); err != nil {
			return err
		}
	}
	step("cf: starting pcap-api with the cf resolver on 127.0.0.1")
	apiHost, apiHostFile, err := d.dir.Key("cf_api_host_key")
	if err != nil {
		return err
	}
	hk, err := d.dir.Write("cf_agent_host_keys", hostKeys.String())
	if err != nil {
		return err
	}
	apiCfg, err := d.dir.Write("cf-api.yml", fmt.Sprintf(`listen: "127.0.0.1:0"
http_listen: ""
host_key_file: %q
agents:
  client_key_file: %q
  host_keys_file: %q
  port: %d
cf:
  api_url: %q
  allow_insecure_http: true
  uaa_client_id: ssh-proxy
  uaa_client_secret: ssh-proxy-secret
`, apiHostFile, apiClientFile, hk, port, ccs.URL()))
	if err != nil {
		return err
	}
	api, err := d.start(netlab.StartOptions{}, filepath.Join(d.bin, "pcap-api"), "--config", apiCfg)
	if err != nil {
		return err
	}
	m, err := api.WaitLine(regexp.MustCompile(`"msg":"api-listening".*"address":"([^"]+)"`), 20*time.Second)
	if err != nil {
		return err
	}
	apiAddr := m[1]

	home, err := os.MkdirTemp(string(d.dir), "cf-home-")
	if err != nil {
		return err
	}
	env := []string{"CF_HOME=" + home, "CF_PLUGIN_HOME=" + home, "CF_COLOR=false"}
	cf := func(args ...string) error {
		fmt.Printf("    $ cf %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, cfBin, args...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cf %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	step("cf: logging in with the real cf CLI and installing the plugin")
	for _, args := range [][]string{
		{"api", ccs.URL()}, {"auth", "developer", "developer-pw"}, {"target", "-o", "demo-org", "-s", "demo-space"},
		{"install-plugin", "-f", filepath.Join(d.bin, "pcap-cf-plugin")},
	} {
		if err := cf(args...); err != nil {
			return err
		}
	}
	step("cf: cf pcap demo-app --duration %ds -f 'udp port 9000' -o %s", seconds, out)
	os.Remove(out)
	fp := tunnel.Fingerprint(apiHost.PublicKey())
	p, err := d.start(netlab.StartOptions{Env: env}, cfBin, "pcap", "demo-app", "--duration", fmt.Sprintf("%ds", seconds),
		"-f", "udp port 9000", "-o", out, "--pcap-api", apiAddr, "--pcap-api-host-key-fingerprint", fp)
	if err != nil {
		return err
	}
	if err := waitStarted(p, "web", len(hosts)); err != nil {
		return err
	}
	step("cf: sending UDP traffic in each container (150 and 250 packets/s)")
	for i, c := range containers {
		rate := 150 + 100*i
		if _, err := d.start(netlab.StartOptions{Netns: c}, filepath.Join(d.bin, "pcap-traffic"),
			"-to", "198.18.1.1:9000", "-count", fmt.Sprint(rate*max(seconds-2, 1)), "-rate", fmt.Sprint(rate), "-max-time", fmt.Sprintf("%ds", seconds+5)); err != nil {
			return err
		}
	}
	select {
	case <-p.Done():
	case <-time.After(time.Duration(seconds+30) * time.Second):
		return fmt.Errorf("cf pcap did not end in time:\n%s", p.Output())
	}
	fmt.Println(p.Output())
	if err, _ := p.Wait(0); err != nil {
		return fmt.Errorf("cf pcap: %w", err)
	}
	step("capinfos %s", out)
	return show("capinfos", "-c", "-I", out)
}

// freePort finds a port free on every host.
func freePort(hosts []string) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", hosts[0]+":0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		for _, h := range hosts[1:] {
			l2, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			l2.Close()
		}
		l.Close()
		if ok {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free on %v", hosts)
}
