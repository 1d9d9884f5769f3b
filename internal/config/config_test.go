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
	c, err := Load("serve", []string{"--listen-addr", "flag:3"}, func(k string) string { return env[k] }, io.Discard)
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
		if _, err := Load("serve", []string{"--listen-addr", addr}, func(string) string { return "" }, io.Discard); err != nil {
			t.Errorf("--listen-addr %s: %v", addr, err)
		}
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
