package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestReliabilityCloudControllerDownOrSlow starts captures while the
// Cloud Controller refuses connections or answers nothing (cf timeout
// 1 s): each is refused within a few seconds with the reason, audited,
// and nothing is captured. When the API must find UAA through a Cloud
// Controller that is down, the login fails, and the API logs why.
func TestReliabilityCloudControllerDownOrSlow(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	const bound = 5 * time.Second
	u := uaa.StartForTest(t, uaa.Options{
		Users:   []uaa.User{{Username: "developer", Password: "developer-pw", Scopes: []string{"openid", "cloud_controller.read"}}},
		Clients: uaa.DefaultClients(),
	})
	tok, err := u.MintToken("developer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	// A port nothing listens on, and a Cloud Controller that never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() {
		close(release)
		slow.Close()
	})
	slowAddr := strings.TrimPrefix(slow.URL, "http://")

	dir := t.TempDir()
	apiKey := newKeyPair(t, dir, "api_client")
	startCFAPI := func(ccURL, uaaURL string) *apiProc {
		return startAPI(t, apiOptions{ClientKey: apiKey, Config: func(c *api.Config) {
			c.CF = &api.CFConfig{APIURL: ccURL, UAAURL: uaaURL, AllowInsecureHTTP: true, UAAClientSecret: "ssh-proxy-secret", Timeout: time.Second}
		}})
	}
	command := "capture --app " + cfApp + " --duration 5s"

	for _, tc := range []struct {
		name, cc, reason string
	}{
		{"down", "http://" + closed, "check SSH access: Cloud Controller unreachable: dial tcp " + closed + ": connect: connection refused"},
		{"slow", slow.URL, "check SSH access: Cloud Controller unreachable: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startCFAPI(tc.cc, u.URL())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r := relExec(ctx, a, "cf", ssh.Password(tok), command)
			t.Logf("Cloud Controller %s: %v, %q", tc.name, r.Took, r.Stderr)
			want := fmt.Sprintf("pcap: error: internal reason=%q\n", tc.reason)
			if r.Status != 1 || r.Err != nil || r.Stderr != want || len(r.Stdout) != 0 {
				t.Errorf("status %d, err %v, %d bytes of capture, stderr:\n%s\nwant 1, nil, none, stderr:\n%s", r.Status, r.Err, len(r.Stdout), r.Stderr, want)
			}
			if r.Took > bound {
				t.Errorf("the refusal took %v, want within %v", r.Took, bound)
			}
			a.WaitLine(t, regexp.MustCompile(`"msg":"capture-refused","user":"cf:developer".*"code":"internal","reason":"`+regexp.QuoteMeta(tc.reason)+`"`), 5*time.Second)
			if n := relCount(a, `"msg":"capture-started"`); n != 0 {
				t.Errorf("the API started %d captures", n)
			}
		})
	}

	t.Run("UAA found through a Cloud Controller that does not answer", func(t *testing.T) {
		a := startCFAPI("http://"+slowAddr, "")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r := relExec(ctx, a, "cf", ssh.Password(tok), command)
		t.Logf("login: %v, %v", r.Took, r.Err)
		if r.Err == nil || !strings.Contains(r.Err.Error(), "unable to authenticate") {
			t.Errorf("login with the Cloud Controller silent: status %d, err %v; want it refused", r.Status, r.Err)
		}
		if r.Took > bound {
			t.Errorf("the refused login took %v, want within %v", r.Took, bound)
		}
		a.WaitLine(t, regexp.MustCompile(`"msg":"auth-refused","user":"cf".*"error":"cfresolver: find UAA from the Cloud Controller: Cloud Controller unreachable: context deadline exceeded \(Client.Timeout exceeded while awaiting headers\)"`), 5*time.Second)
	})
}
