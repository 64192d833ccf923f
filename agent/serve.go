package agent

import (
	"fmt"
	"log/slog"
	"net"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// NewServer builds the agent's SSH server from a validated config: host key
// from file, only the authorized keys may connect, only capture channels.
func NewServer(cfg Config, log *slog.Logger) (*tunnel.Server, *Agent, error) {
	hostKey, err := tunnel.LoadSigner(cfg.HostKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: host key: %w", err)
	}
	keys, err := tunnel.LoadAuthorizedKeys(cfg.AuthorizedKeysFile)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: authorized keys: %w", err)
	}
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("agent: %s lists no keys", cfg.AuthorizedKeysFile)
	}
	allowed := tunnel.NewKeySet(keys...)
	sc := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if err := allowed.Check(key); err != nil {
				return nil, err
			}
			return &ssh.Permissions{Extensions: map[string]string{"fingerprint": tunnel.Fingerprint(key)}}, nil
		},
		MaxAuthTries: 3,
	}
	sc.AddHostKey(hostKey)

	a := &Agent{
		Locator:     CellLocator{NetnsDir: cfg.Containers.NetnsDir},
		Logger:      log,
		MaxCaptures: cfg.MaxCaptures,
		BufferSize:  cfg.BufferSize,
		QueueBytes:  cfg.QueueBytes,
	}
	srv := &tunnel.Server{
		Config:   sc,
		Handlers: map[string]tunnel.ChannelHandler{agentproto.ChannelCapture: a},

		KeepaliveInterval: cfg.KeepaliveInterval,
		OnConnError: func(remote net.Addr, err error) {
			log.Info("connection-refused", "remote", remote.String(), "error", err.Error())
		},
		OnConnOpen: func(c *ssh.ServerConn) {
			log.Info("connection-opened", "remote", c.RemoteAddr().String(), "key", c.Permissions.Extensions["fingerprint"])
		},
		OnConnClose: func(c *ssh.ServerConn) {
			log.Info("connection-closed", "remote", c.RemoteAddr().String())
		},
	}
	return srv, a, nil
}
