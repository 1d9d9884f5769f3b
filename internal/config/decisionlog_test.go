package config

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDecisionLogSettings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "authzd.yaml")
	yaml := "decision_log: sync\ndecision_log_queue_size: 4096\ndecision_log_mask: [subject, record_id]\ndecision_log_mask_key: from-the-file-0123456789\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AUTHZ_CONFIG": file, "AUTHZ_DECISION_LOG_FLUSH_INTERVAL": "50ms", "AUTHZ_DECISION_LOG_OVERFLOW": "drop_denies_last"}
	c, err := Load("serve", []string{"--decision-log-retention-days", "30", "--decision-log-batch-size", "500"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.DecisionLog != "sync" || c.DecisionLogQueueSize != 4096 || c.DecisionLogBatchSize != 500 || c.DecisionLogFlushInterval != 50*time.Millisecond ||
		c.DecisionLogOverflow != "drop_denies_last" || c.DecisionLogRetentionDays != 30 || !slices.Equal(c.DecisionLogMask, []string{"subject", "record_id"}) {
		t.Fatalf("got %+v", c)
	}
	r := c.Redacted()
	if strings.Contains(r["decision_log_mask_key"], "0123456789") || r["decision_log_mask"] != "subject,record_id" {
		t.Fatalf("redacted %v", r)
	}
	d := Default()
	if d.DecisionLog != "async" || d.DecisionLogOverflow != "block" || d.Validate() != nil {
		t.Fatalf("defaults %+v: %v", d, d.Validate())
	}
}

func TestDecisionLogRejectsBadValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"mode", []string{"--decision-log", "maybe"}, "decision_log must be"},
		{"queue", []string{"--decision-log-queue-size", "0"}, "decision_log_queue_size"},
		{"batch above queue", []string{"--decision-log-queue-size", "10", "--decision-log-batch-size", "20"}, "decision_log_batch_size"},
		{"interval", []string{"--decision-log-flush-interval", "0s"}, "decision_log_flush_interval"},
		{"overflow", []string{"--decision-log-overflow", "drop_all"}, "decision_log_overflow"},
		{"retention", []string{"--decision-log-retention-days", "-1"}, "decision_log_retention_days"},
		{"memory", []string{"--decision-log-memory-entries", "0"}, "decision_log_memory_entries"},
		{"mask attribute", []string{"--decision-log-mask", "subject,password", "--decision-log-mask-key", "0123456789abcdef"}, `unknown attribute "password"`},
		{"mask without key", []string{"--decision-log-mask", "subject"}, "decision_log_mask_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("serve", tt.args, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want mention of %q", err, tt.want)
			}
		})
	}
}
