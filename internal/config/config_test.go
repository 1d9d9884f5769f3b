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

func TestRedactedHidesPassword(t *testing.T) {
	c := Default()
	c.DatabaseURL = "postgres://app:s3cret@db:5432/authz?sslmode=require"
	got := c.Redacted()["database_url"]
	if strings.Contains(got, "s3cret") || !strings.Contains(got, "db:5432") {
		t.Fatalf("redacted url %q", got)
	}
}
