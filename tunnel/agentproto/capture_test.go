package agentproto

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/tunneltest"
)

// serve runs a tunnel.Server that handles capture channels with h, and
// returns a client connected to it; both end with the test.
func serve(t *testing.T, h tunnel.ChannelHandler) *tunnel.Client {
	t.Helper()
	addr, cfg := tunneltest.Serve(t, map[string]tunnel.ChannelHandler{ChannelCapture: h})
	c, err := tunnel.Dial(context.Background(), addr, cfg)
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func hostRequest() CaptureRequest {
	return CaptureRequest{Version: ProtocolVersion, Target: Target{Kind: TargetHost}, Interfaces: []string{"lo"}}
}

// TestOpenCaptureRejections: the agent's refusal, and a request its
// decoder refuses, reach the caller as a *tunnel.RejectError with the code
// and message; a refused capture does not count on the connection.
func TestOpenCaptureRejections(t *testing.T) {
	c := serve(t, tunnel.ChannelHandlerFunc(func(_ context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
		req, err := DecodeCaptureRequest(nc.ExtraData())
		if err != nil {
			tunnel.RejectChannel(nc, err)
			return
		}
		tunnel.RejectChannel(nc, tunnel.Reject(tunnel.CodeBadFilter, "filter "+req.Filter+" does not compile"))
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	req := hostRequest()
	req.Filter = "port"
	_, err := OpenCapture(ctx, c, req)
	var re *tunnel.RejectError
	if !errors.As(err, &re) || re.Code != tunnel.CodeBadFilter || re.Message != "filter port does not compile" {
		t.Errorf("OpenCapture(bad filter) = %v, want bad-filter: filter port does not compile", err)
	}

	req = hostRequest()
	req.Version = 9
	_, err = OpenCapture(ctx, c, req)
	if !errors.As(err, &re) || re.Code != tunnel.CodeUnsupportedVersion || re.Message != "protocol version 9 is not supported (this side speaks 1)" {
		t.Errorf("OpenCapture(version 9) = %v", err)
	}
	if n, _ := c.Channels(); n != 0 {
		t.Errorf("%d channels counted after refused captures, want 0", n)
	}
}

// TestCaptureCountsUntilClosed: an open capture counts on its connection
// until its channel has closed.
func TestCaptureCountsUntilClosed(t *testing.T) {
	c := serve(t, tunnel.ChannelHandlerFunc(func(ctx context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		defer ch.Close()
		go ssh.DiscardRequests(reqs)
		<-ctx.Done()
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	capt, err := OpenCapture(ctx, c, hostRequest())
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Channels(); n != 1 {
		t.Errorf("%d channels while a capture is open, want 1", n)
	}
	capt.Close()
	if _, err := capt.Wait(ctx); err != nil {
		t.Fatalf("Wait() after Close = %v", err)
	}
	if n, _ := c.Channels(); n != 0 {
		t.Errorf("%d channels after the capture closed, want 0", n)
	}
}

// TestCaptureStreamStopAndStats: the client side of an accepted capture:
// data, running stats, stop reaching the handler, final stats, EOF.
func TestCaptureStreamStopAndStats(t *testing.T) {
	handlerErr := make(chan error, 1)
	h := tunnel.ChannelHandlerFunc(func(_ context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
		handlerErr <- func() error {
			ch, reqs, err := nc.Accept()
			if err != nil {
				return err
			}
			defer ch.Close()
			if _, err := ch.Write([]byte("pcapng-bytes")); err != nil {
				return err
			}
			running := Stats{Interfaces: []InterfaceStats{{Name: "lo", Received: 1}}}
			if _, err := ch.SendRequest(RequestStats, false, running.Marshal()); err != nil {
				return err
			}
			for r := range reqs {
				if r.WantReply {
					r.Reply(r.Type == RequestStop, nil)
				}
				if r.Type != RequestStop {
					continue
				}
				final := Stats{Interfaces: []InterfaceStats{{Name: "lo", Received: 2, Packets: 2}}, Final: true, End: EndStopped}
				if _, err := ch.SendRequest(RequestStats, false, final.Marshal()); err != nil {
					return err
				}
				// A late non-final update must not replace the final one.
				if _, err := ch.SendRequest(RequestStats, false, running.Marshal()); err != nil {
					return err
				}
				return ch.CloseWrite()
			}
			return errors.New("request channel ended before stop")
		}()
	})
	c := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	capt, err := OpenCapture(ctx, c, hostRequest())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("pcapng-bytes"))
	if _, err := io.ReadFull(capt, buf); err != nil || string(buf) != "pcapng-bytes" {
		t.Fatalf("read %q, %v", buf, err)
	}
	select {
	case <-capt.Updates():
	case <-ctx.Done():
		t.Fatal("no stats update")
	}
	if s := capt.Stats(); s.Final || len(s.Interfaces) != 1 || s.Interfaces[0].Received != 1 {
		t.Errorf("running stats = %+v", s)
	}
	if err := capt.Stop(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(capt)
	if err != nil || len(rest) != 0 {
		t.Errorf("after stop read %q, %v; want EOF", rest, err)
	}
	st, err := capt.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Final || st.End != EndStopped || st.Total().Packets != 2 {
		t.Errorf("final stats = %+v", st)
	}
	if err := <-handlerErr; err != nil {
		t.Errorf("handler: %v", err)
	}
}
