package uaa

import (
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestCheckCF(t *testing.T) {
	user := func(grant string, aud []string, scopes ...string) *Claims {
		return &Claims{RegisteredClaims: jwt.RegisteredClaims{Audience: aud}, UserID: "u-1", UserName: "dev", ClientID: "cf", GrantType: grant, Scope: scopes}
	}
	client := func(id string, aud []string, scopes ...string) *Claims {
		return &Claims{RegisteredClaims: jwt.RegisteredClaims{Audience: aud}, ClientID: id, GrantType: "client_credentials", Scope: scopes}
	}
	cc := []string{"cloud_controller", "openid", "cf"}
	for _, tc := range []struct {
		name    string
		claims  *Claims
		allowed []string
		want    string // "" = accepted
	}{
		{"password grant", user("password", cc, "cloud_controller.read"), nil, ""},
		{"code grant (cf ssh-code)", user("authorization_code", []string{"cloud_controller", "ssh-proxy"}, "cloud_controller.read"), nil, ""},
		{"admin scope only", user("password", cc, "cloud_controller.admin"), nil, ""},
		{"client credentials", client("monitor", []string{"cloud_controller", "monitor"}, "cloud_controller.read"), nil,
			`uaa: token refused: it is a token of client "monitor" for itself (grant client_credentials), not of a user; an operator may allow the client with cf.allowed_clients`},
		{"allowed client", client("monitor", []string{"cloud_controller", "monitor"}, "cloud_controller.read"), []string{"monitor"}, ""},
		{"allowed client, other audience", client("monitor", []string{"monitor"}, "uaa.none"), []string{"monitor"},
			"uaa: token refused: it is not for the Cloud Controller (audience monitor)"},
		{"user id but client credentials grant", &Claims{UserID: "u-1", ClientID: "x", GrantType: "client_credentials"}, nil,
			`uaa: token refused: it is a token of client "x" for itself (grant client_credentials), not of a user; an operator may allow the client with cf.allowed_clients`},
		{"no user id", &Claims{ClientID: "x"}, nil,
			`uaa: token refused: it is a token of client "x" for itself (grant unknown), not of a user; an operator may allow the client with cf.allowed_clients`},
		{"foreign audience", user("password", []string{"bosh", "bosh_cli"}, "bosh.admin"), nil,
			"uaa: token refused: it is not for the Cloud Controller (audience bosh bosh_cli)"},
		{"no audience", user("password", nil, "cloud_controller.read"), nil,
			"uaa: token refused: it is not for the Cloud Controller (audience none)"},
		{"write scope only", user("password", cc, "cloud_controller.write"), nil,
			"uaa: token refused: it has neither cloud_controller.read nor cloud_controller.admin scope (scopes cloud_controller.write)"},
		{"read-only admin scope only", user("password", cc, "cloud_controller.admin_read_only"), nil,
			"uaa: token refused: it has neither cloud_controller.read nor cloud_controller.admin scope (scopes cloud_controller.admin_read_only)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCF(tc.claims, tc.allowed)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want || !errors.Is(err, ErrRefused)):
				t.Errorf("error = %v\n   want %s", err, tc.want)
			}
		})
	}
}

func TestCheckBOSH(t *testing.T) {
	claims := func(aud ...string) *Claims { return &Claims{RegisteredClaims: jwt.RegisteredClaims{Audience: aud}} }
	if err := CheckBOSH(claims("bosh", "bosh_cli"), []string{"bosh_cli"}); err != nil {
		t.Errorf("bosh CLI token refused: %v", err)
	}
	if err := CheckBOSH(claims("bosh", "ops"), []string{"bosh_cli", "ops"}); err != nil {
		t.Errorf("configured audience refused: %v", err)
	}
	if err := CheckBOSH(claims("bosh.teams.cf", "ops"), []string{"bosh_cli", "bosh"}); err != nil {
		t.Errorf("team resource refused: %v", err)
	}
	if err := CheckBOSH(claims("boshy", "bosh_client"), []string{"bosh_cli", "bosh"}); err == nil {
		t.Error("a look-alike audience accepted")
	}
	err := CheckBOSH(claims("cloud_controller", "cf"), []string{"bosh_cli"})
	want := "uaa: token refused: it is not for the BOSH director (audience cloud_controller cf, want one of bosh_cli)"
	if !errors.Is(err, ErrRefused) || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}
