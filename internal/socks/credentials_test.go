package socks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCredentials(t *testing.T) {
	for _, tc := range []struct {
		in       string
		user     string
		password string
		wantErr  bool
	}{
		{"alice:s3cret", "alice", "s3cret", false},
		{"alice:with:colons", "alice", "with:colons", false},
		{"alice", "", "", true},
		{":pw", "", "", true},
		{"alice:", "", "", true},
		{"alice:a\nb", "", "", true},
		{strings.Repeat("u", 256) + ":pw", "", "", true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			c, err := ParseCredentials(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", c)
				}
				if !strings.HasPrefix(err.Error(), "socks: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.Valid(tc.user, tc.password) {
				t.Errorf("Valid(%q, %q) = false", tc.user, tc.password)
			}
			if c.Valid(tc.user, tc.password+"x") || c.Valid(tc.user+"x", tc.password) || c.Valid(tc.user, "") {
				t.Error("Valid accepted a wrong pair")
			}
		})
	}
}

func TestLoadCredentialsFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		want    StaticCredentials
		errLine string // the error names this, if not empty
	}{
		{"ok", "# users\nalice:s3cret\n\n  bob:pa:ss  \n", StaticCredentials{"alice": "s3cret", "bob": "pa:ss"}, ""},
		{"bad", "alice:s3cret\n# x\nbob\n", nil, ":3:"},
		{"dup", "alice:a\nalice:b\n", nil, ":2:"},
		{"empty", "# nothing\n", nil, "no user:password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "creds")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadCredentialsFile(path)
			if tc.errLine != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errLine) {
					t.Fatalf("error %v, want one containing %q", err, tc.errLine)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d users, want %d", len(got), len(tc.want))
			}
			for u, p := range tc.want {
				if !got.Valid(u, p) {
					t.Errorf("user %q not loaded with password %q", u, p)
				}
			}
		})
	}
	if _, err := LoadCredentialsFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
}

func TestCheckOpen(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		auth    bool
		refused bool
	}{
		{"127.0.0.1:1080", false, false},
		{"127.1.2.3:1080", false, false},
		{"[::1]:1080", false, false},
		{"localhost:1080", false, false},
		{":1080", false, true},
		{"0.0.0.0:1080", false, true},
		{"[::]:1080", false, true},
		{"192.168.1.10:1080", false, true},
		{"example.com:1080", false, true},
		{":1080", true, false},
		{"0.0.0.0:1080", true, false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			err := CheckOpen(tc.addr, tc.auth)
			if !tc.refused {
				if err != nil {
					t.Errorf("CheckOpen(%q, %v) = %v, want nil", tc.addr, tc.auth, err)
				}
				return
			}
			if !errors.Is(err, ErrOpenProxy) {
				t.Fatalf("CheckOpen(%q, %v) = %v, want ErrOpenProxy", tc.addr, tc.auth, err)
			}
			for _, flag := range []string{"--proxy-auth", "--allow-open-proxy"} {
				if !strings.Contains(err.Error(), flag) {
					t.Errorf("error %q does not name %s", err, flag)
				}
			}
		})
	}
	if err := CheckOpen("no-port", false); err == nil || errors.Is(err, ErrOpenProxy) {
		t.Errorf("CheckOpen without a port: %v, want a parse error", err)
	}
}
