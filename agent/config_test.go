package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte("host_key_file: /var/vcap/jobs/pcap-agent/config/host_key\nauthorized_keys_file: /var/vcap/jobs/pcap-agent/config/authorized_keys\n"))
	if err != nil {
		t.Fatalf("ParseConfig() = %v", err)
	}
	want := Config{
		Listen:             "0.0.0.0:9494",
		HostKeyFile:        "/var/vcap/jobs/pcap-agent/config/host_key",
		AuthorizedKeysFile: "/var/vcap/jobs/pcap-agent/config/authorized_keys",
		MaxCaptures:        4,
		BufferSize:         32 << 20,
		QueueBytes:         32 << 20,
		Containers:         ContainersConfig{NetnsDir: "/var/vcap/data/garden-cni/container-netns"},
		KeepaliveInterval:  15 * time.Second,
		LogLevel:           "info",
	}
	if c != want {
		t.Errorf("ParseConfig() = %+v, want %+v", c, want)
	}
}

func TestParseConfigOverrides(t *testing.T) {
	yml := `
listen: "127.0.0.1:0"
host_key_file: hk
authorized_keys_file: ak
max_captures: 1
buffer_size: 65536
queue_bytes: 524288
containers:
  netns_dir: /run/netns-by-guid
keepalive_interval: 1m30s
log_level: debug
debug_listen: "127.0.0.1:17494"
`
	c, err := ParseConfig([]byte(yml))
	if err != nil {
		t.Fatalf("ParseConfig() = %v", err)
	}
	want := Config{Listen: "127.0.0.1:0", HostKeyFile: "hk", AuthorizedKeysFile: "ak", MaxCaptures: 1,
		BufferSize: 64 << 10, QueueBytes: 512 << 10, Containers: ContainersConfig{NetnsDir: "/run/netns-by-guid"}, KeepaliveInterval: 90 * time.Second, LogLevel: "debug",
		DebugListen: "127.0.0.1:17494"}
	if c != want {
		t.Errorf("ParseConfig() = %+v, want %+v", c, want)
	}
}

func TestParseConfigReportsEveryProblem(t *testing.T) {
	yml := "listen: nope\nmax_captures: 0\nbuffer_size: 1\nqueue_bytes: 1\nkeepalive_interval: -1s\ncontainers: {netns_dir: \"\"}\nlog_level: loud\n"
	_, err := ParseConfig([]byte(yml))
	want := "agent: invalid config: " + strings.Join([]string{
		`listen "nope": address nope: missing port in address`,
		"host_key_file is required",
		"authorized_keys_file is required",
		"max_captures 0 is out of range 1..1000",
		"buffer_size 1 is out of range 64 KiB..1 GiB",
		"queue_bytes 1 is out of range 512 KiB..1 GiB",
		"keepalive_interval -1s is out of range 0..10m",
		`containers.netns_dir "" is not a clean absolute path below /`,
		`log_level "loud" is not one of debug, info, warn, error`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("ParseConfig() = %v\nwant %s", err, want)
	}

	upper := "host_key_file: a\nauthorized_keys_file: b\nmax_captures: 1001\nbuffer_size: 1073741825\nqueue_bytes: 1073741825\n"
	_, err = ParseConfig([]byte(upper))
	want = "agent: invalid config: max_captures 1001 is out of range 1..1000\n" +
		"buffer_size 1073741825 is out of range 64 KiB..1 GiB\nqueue_bytes 1073741825 is out of range 512 KiB..1 GiB"
	if err == nil || err.Error() != want {
		t.Errorf("ParseConfig(too big) = %v\nwant %s", err, want)
	}
}

func TestParseConfigRejects(t *testing.T) {
	tests := map[string]struct {
		yml, want string
	}{
		"unknown key": {"host_key_file: a\nauthorized_keys_file: b\nmax_capture: 3\n",
			"agent: parse config: yaml: unmarshal errors:\n  line 3: field max_capture not found in type agent.Config"},
		"wrong type": {"host_key_file: a\nauthorized_keys_file: b\nmax_captures: many\n",
			"agent: parse config: yaml: unmarshal errors:\n  line 3: cannot unmarshal !!str `many` into int"},
		"empty file": {"", "agent: invalid config: host_key_file is required\nauthorized_keys_file is required"},
		"not a map":  {"- a\n- b\n", "agent: parse config: yaml: unmarshal errors:\n  line 1: cannot unmarshal !!seq into agent.Config"},
		"old proc_root": {"host_key_file: a\nauthorized_keys_file: b\nproc_root: /proc\n",
			"agent: parse config: yaml: unmarshal errors:\n  line 3: field proc_root not found in type agent.Config"},
		"relative netns_dir": {"host_key_file: a\nauthorized_keys_file: b\ncontainers:\n  netns_dir: var/netns\n",
			`agent: invalid config: containers.netns_dir "var/netns" is not a clean absolute path below /`},
		"unclean netns_dir": {"host_key_file: a\nauthorized_keys_file: b\ncontainers:\n  netns_dir: /var/../netns/\n",
			`agent: invalid config: containers.netns_dir "/var/../netns/" is not a clean absolute path below /`},
		"root netns_dir": {"host_key_file: a\nauthorized_keys_file: b\ncontainers:\n  netns_dir: /\n",
			`agent: invalid config: containers.netns_dir "/" is not a clean absolute path below /`},
		"debug_listen off loopback": {"host_key_file: a\nauthorized_keys_file: b\ndebug_listen: \"0.0.0.0:17494\"\n",
			`agent: invalid config: debug_listen "0.0.0.0:17494": "0.0.0.0": not a loopback address (127.0.0.1, ::1 or localhost)`},
		"debug_listen without port": {"host_key_file: a\nauthorized_keys_file: b\ndebug_listen: localhost\n",
			`agent: invalid config: debug_listen "localhost": address localhost: missing port in address`},
		"unknown containers key": {"host_key_file: a\nauthorized_keys_file: b\ncontainers:\n  netns: /x\n",
			"agent: parse config: yaml: unmarshal errors:\n  line 4: field netns not found in type agent.ContainersConfig"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.yml))
			if err == nil || err.Error() != tt.want {
				t.Errorf("ParseConfig() = %+v, %v\nwant error %s", c, err, tt.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(p, []byte("host_key_file: a\nauthorized_keys_file: b\nlisten: \":2222\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil || c.Listen != ":2222" || c.MaxCaptures != 4 {
		t.Errorf("LoadConfig() = %+v, %v", c, err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadConfig(missing) = %v, want ErrNotExist", err)
	}
}
