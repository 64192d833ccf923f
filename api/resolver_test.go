package api

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

func TestStaticResolverResolve(t *testing.T) {
	r := &StaticResolver{Groups: map[string][]string{
		"lb":     {"10.0.0.5:9494", "10.0.0.6:9494", "10.0.0.7:9494"},
		"router": {"10.0.1.1:9494"},
		"mixed":  {"10.0.0.6:9494", "10.0.2.2:9494"},
	}}
	host := agentproto.Target{Kind: agentproto.TargetHost}
	tgt := func(name, addr string) Target {
		return Target{Name: name, Agent: addr, Capture: host, Description: "agent " + addr, Address: netip.MustParseAddrPort(addr).Addr()}
	}
	cases := []struct {
		name    string
		targets []string
		want    []Target
	}{
		{"whole group, in config order", []string{"lb"}, []Target{
			tgt("lb/0", "10.0.0.5:9494"), tgt("lb/1", "10.0.0.6:9494"), tgt("lb/2", "10.0.0.7:9494")}},
		{"group by index", []string{"lb/2"}, []Target{tgt("lb/2", "10.0.0.7:9494")}},
		{"group by address", []string{"lb/10.0.0.6:9494"}, []Target{tgt("lb/1", "10.0.0.6:9494")}},
		{"several groups", []string{"router", "lb/0"}, []Target{tgt("router/0", "10.0.1.1:9494"), tgt("lb/0", "10.0.0.5:9494")}},
		{"the same agent twice is captured once", []string{"lb/1", "lb", "lb/10.0.0.6:9494"}, []Target{
			tgt("lb/1", "10.0.0.6:9494"), tgt("lb/0", "10.0.0.5:9494"), tgt("lb/2", "10.0.0.7:9494")}},
		{"an agent in two groups is captured once, under the first name", []string{"mixed", "lb/1"}, []Target{
			tgt("mixed/0", "10.0.0.6:9494"), tgt("mixed/1", "10.0.2.2:9494")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, skipped, err := r.Resolve(context.Background(), &Identity{Name: "op", Resolver: "static"}, capturecmd.Request{Targets: c.targets})
			if err != nil {
				t.Fatalf("Resolve(%v): %v", c.targets, err)
			}
			if len(skipped) != 0 {
				t.Errorf("skipped = %v, want none", skipped)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Resolve(%v)\n got  %+v\n want %+v", c.targets, got, c.want)
			}
		})
	}
}

func TestStaticResolverRefuses(t *testing.T) {
	r := &StaticResolver{Groups: map[string][]string{
		"lb":     {"10.0.0.5:9494", "10.0.0.6:9494"},
		"router": {"10.0.1.1:9494"},
	}}
	cases := []struct {
		name string
		req  capturecmd.Request
		code string
		msg  string
	}{
		{"no target", capturecmd.Request{}, tunnel.CodeBadRequest, "no target given; groups are: lb, router"},
		{"unknown group", capturecmd.Request{Targets: []string{"web", "lb", "db/0"}}, tunnel.CodeTargetNotFound,
			"unknown target(s): web, db/0; groups are: lb, router"},
		{"index out of range", capturecmd.Request{Targets: []string{"lb/2"}}, tunnel.CodeTargetNotFound,
			"unknown target(s): lb/2; groups are: lb, router"},
		{"address not in the group", capturecmd.Request{Targets: []string{"lb/10.0.1.1:9494"}}, tunnel.CodeTargetNotFound,
			"unknown target(s): lb/10.0.1.1:9494; groups are: lb, router"},
		{"index with a leading zero", capturecmd.Request{Targets: []string{"lb/01"}}, tunnel.CodeTargetNotFound,
			"unknown target(s): lb/01; groups are: lb, router"},
		{"empty index", capturecmd.Request{Targets: []string{"lb/"}}, tunnel.CodeTargetNotFound,
			"unknown target(s): lb/; groups are: lb, router"},
		{"cf app", capturecmd.Request{App: "g", Targets: []string{"lb"}}, tunnel.CodeBadRequest,
			"--app, --instance and -d are not used by static groups; name groups as GROUP or GROUP/INDEX"},
		{"cf instances", capturecmd.Request{Instances: []int{0}, Targets: []string{"lb"}}, tunnel.CodeBadRequest,
			"--app, --instance and -d are not used by static groups; name groups as GROUP or GROUP/INDEX"},
		{"bosh deployment", capturecmd.Request{Deployment: "cf", Targets: []string{"lb"}}, tunnel.CodeBadRequest,
			"--app, --instance and -d are not used by static groups; name groups as GROUP or GROUP/INDEX"},
		{"bosh deployment and a cf app", capturecmd.Request{Deployment: "cf", App: "g", Targets: []string{"lb"}}, tunnel.CodeBadRequest,
			"--app, --instance and -d are not used by static groups; name groups as GROUP or GROUP/INDEX"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _, err := r.Resolve(context.Background(), &Identity{Name: "op", Resolver: "static"}, c.req)
			var re *tunnel.RejectError
			if !errors.As(err, &re) {
				t.Fatalf("Resolve = %v, %v; want a *tunnel.RejectError", got, err)
			}
			if re.Code != c.code || re.Message != c.msg {
				t.Errorf("refusal = %s: %q\n want    %s: %q", re.Code, re.Message, c.code, c.msg)
			}
			if got != nil {
				t.Errorf("refusal came with targets %v", got)
			}
		})
	}
}

func TestStaticResolverAuth(t *testing.T) {
	op, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	r := &StaticResolver{Operators: tunnel.NewKeySet(op.PublicKey())}
	if r.Name() != "static" {
		t.Errorf("Name = %q", r.Name())
	}
	id, err := r.AuthKey(context.Background(), op.PublicKey())
	if err != nil {
		t.Fatalf("operator key refused: %v", err)
	}
	want := &Identity{Name: "key:" + tunnel.Fingerprint(op.PublicKey()), Method: MethodKey, Resolver: "static"}
	if !reflect.DeepEqual(id, want) {
		t.Errorf("identity = %+v, want %+v", id, want)
	}
	if id.String() != "static:key:"+tunnel.Fingerprint(op.PublicKey()) {
		t.Errorf("identity string = %q", id.String())
	}
	if id, err := r.AuthKey(context.Background(), other.PublicKey()); err == nil {
		t.Errorf("unknown key accepted as %+v", id)
	}
	if _, err := r.AuthPassword(context.Background(), "secret"); !errors.Is(err, ErrNoAuth) {
		t.Errorf("AuthPassword error = %v, want ErrNoAuth", err)
	}
}
