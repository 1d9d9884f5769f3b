package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "authzd.yaml")
	if err := os.WriteFile(file, []byte("listen_addr: file:1\nlog_level: debug\nmax_batch_checks: 10\nshutdown_timeout: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AUTHZ_CONFIG": file, "AUTHZ_LISTEN_ADDR": "env:2", "AUTHZ_MAX_BATCH_CHECKS": "20"}
	c, err := Load("serve", []string{"--listen-addr", "flag:3", "--require-auth"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != "flag:3" || c.MaxBatchChecks != 20 || c.LogLevel != "debug" || c.ShutdownTimeout != 3*time.Second || c.LogFormat != "json" {
		t.Fatalf("got %+v", c)
	}
}

func TestLoadRejectsBadValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad level", []string{"--log-level", "loud"}, nil, "log_level"},
		{"bad batch env", nil, map[string]string{"AUTHZ_MAX_BATCH_CHECKS": "many"}, "AUTHZ_MAX_BATCH_CHECKS"},
		{"zero batch", []string{"--max-batch-checks", "0"}, nil, "max_batch_checks"},
		{"unknown flag", []string{"--nope"}, nil, "nope"},
		{"stray argument", []string{"extra"}, nil, "unexpected"},
		{"listen address without port", []string{"--listen-addr", "localhost"}, nil, "listen_addr"},
		{"listen port out of range", []string{"--listen-addr", ":99999"}, nil, "listen_addr"},
		{"listen port not a number", nil, map[string]string{"AUTHZ_LISTEN_ADDR": ":5oo51"}, "listen_addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("serve", tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestListenAddrAccepted(t *testing.T) {
	for _, addr := range []string{":50051", "127.0.0.1:0", "[::1]:50051", "localhost:65535"} {
		if _, err := Load("serve", []string{"--listen-addr", addr, "--require-auth"}, func(string) string { return "" }, io.Discard); err != nil {
			t.Errorf("--listen-addr %s: %v", addr, err)
		}
	}
}

// TestNoAuthListensOnLoopbackOnly: without authentication the server
// listens beyond loopback only when told --insecure-no-auth; with a
// database authentication is on by default.
func TestNoAuthListensOnLoopbackOnly(t *testing.T) {
	none := func(string) string { return "" }
	tests := []struct {
		name   string
		args   []string
		auth   bool
		listen string
		err    string
	}{
		{"the demo", nil, false, "127.0.0.1:50051", ""},
		{"demo on loopback", []string{"--listen-addr", "localhost:7000"}, false, "localhost:7000", ""},
		{"demo on ipv6 loopback", []string{"--listen-addr", "[::1]:7000"}, false, "[::1]:7000", ""},
		{"demo on every interface", []string{"--listen-addr", ":50051"}, false, "", "beyond loopback"},
		{"demo on an address", []string{"--listen-addr", "10.1.2.3:50051"}, false, "", "beyond loopback"},
		{"demo on a host name", []string{"--listen-addr", "authz.internal:50051"}, false, "", "beyond loopback"},
		{"told insecure", []string{"--listen-addr", ":50051", "--insecure-no-auth"}, false, ":50051", ""},
		{"database", []string{"--database-url", "postgres://db/authz"}, true, ":50051", ""},
		{"database told insecure", []string{"--database-url", "postgres://db/authz", "--insecure-no-auth"}, false, ":50051", ""},
		{"database insecure bool value", []string{"--database-url", "postgres://db/authz", "--insecure-no-auth=false"}, true, ":50051", ""},
		{"memory with keys", []string{"--require-auth"}, true, ":50051", ""},
		{"both", []string{"--require-auth", "--insecure-no-auth"}, false, "", "contradict"},
		{"tls half", []string{"--tls-cert", "a.pem"}, false, "", "together"},
		{"client ca without tls", []string{"--tls-client-ca", "ca.pem", "--require-auth"}, false, "", "client certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load("serve", tt.args, none, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want mention of %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.AuthEnabled() != tt.auth || c.Listen() != tt.listen {
				t.Errorf("auth %v listen %q, want %v %q", c.AuthEnabled(), c.Listen(), tt.auth, tt.listen)
			}
		})
	}
}

// TestLoadRejectsBadFiles: a configuration file is read whole; what it says
// that the service would not use is an error, not ignored.
func TestLoadRejectsBadFiles(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "listen_adr: :1\n", "listen_adr"},
		{"integer duration", "shutdown_timeout: 15\n", "time.Duration"},
		{"second document", "log_level: warn\n---\nlog_level: debug\nbogus: 1\n", "one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "authzd.yaml")
			if err := os.WriteFile(file, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load("serve", []string{"--config", file}, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestRedactedHidesPassword(t *testing.T) {
	tests := []struct {
		url, secret, keep string
	}{
		{"postgres://app:s3cret@db:5432/authz?sslmode=require", "s3cret", "db:5432"},
		{"postgresql://app@db/authz?password=s3cret", "s3cret", "db"},
		{"postgres://app@db/authz?sslmode=verify-full&sslpassword=s3cret", "s3cret", "sslmode=verify-full"},
		{"host=db user=app password=s3cret", "s3cret", ""},
		{"app:s3cret@db:5432/authz", "s3cret", ""},
	}
	for _, tt := range tests {
		c := Default()
		c.DatabaseURL = tt.url
		got := c.Redacted()["database_url"]
		if strings.Contains(got, tt.secret) || !strings.Contains(got, tt.keep) {
			t.Errorf("%s redacted as %q", tt.url, got)
		}
	}
}
