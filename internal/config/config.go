// Package config is the server's one typed configuration. Every field has a
// default, a flag, an AUTHZ_* environment variable and a YAML key; the
// precedence is flags > environment > file > defaults.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the configuration of `authzd serve` and `authzd migrate`.
type Config struct {
	// ListenAddr is the gRPC listen address. Empty listens on port 50051:
	// on every interface when callers authenticate, on loopback only
	// (127.0.0.1) when they do not.
	ListenAddr string `yaml:"listen_addr"`
	// MetricsAddr is the operator's HTTP address: Prometheus metrics at
	// /metrics and Go's profiles at /debug/pprof/. Empty serves neither.
	// Nothing there authenticates: bind it where only operators reach.
	MetricsAddr string `yaml:"metrics_addr"`
	// OTLPEndpoint, when set, exports traces over OTLP/gRPC to this
	// collector (host:port): spans of calls, store transactions and
	// decision-log writes. Empty: no tracing.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// OTLPInsecure sends traces without TLS.
	OTLPInsecure bool `yaml:"otlp_insecure"`
	// TraceSampleRatio is the share of traces started here that are kept
	// (0-1); a caller's sampled trace is always followed.
	TraceSampleRatio float64 `yaml:"trace_sample_ratio"`
	// HTTPAddr serves the OpenID AuthZEN Authorization API over HTTP
	// (HTTPS with --tls-cert); empty serves none.
	HTTPAddr string `yaml:"http_addr"`
	// DatabaseURL selects PostgreSQL (a libpq URL or key=value string);
	// empty serves from memory, seeded from the policy bundle.
	DatabaseURL string `yaml:"database_url"`
	// ListenDatabaseURL is where a replica's listening connection goes,
	// when it differs from DatabaseURL: LISTEN needs a session of its own,
	// which a transaction-mode pooler (PgBouncer) in front of the pool does
	// not give. Empty: DatabaseURL.
	ListenDatabaseURL string `yaml:"listen_database_url"`
	// PoliciesDir reads the policy bundle (model, catalog, templates, demo
	// tenant) from a directory instead of the one embedded in the binary.
	PoliciesDir string `yaml:"policies_dir"`
	// SeedDemo creates the demo tenant at start when it does not exist:
	// "auto" (only when serving from memory), "true" or "false".
	SeedDemo string `yaml:"seed_demo"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is json or console.
	LogFormat string `yaml:"log_format"`
	// MaxBatchChecks bounds the items of one BatchCheck.
	MaxBatchChecks int `yaml:"max_batch_checks"`
	// MaxRecvBytes bounds the size of one request message.
	MaxRecvBytes int `yaml:"max_recv_bytes"`
	// ShutdownTimeout bounds the graceful stop before calls are cut.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// GCHeadroomMB is the room, in MiB, the garbage collector leaves the
	// heap to grow into above what is live once serving (package gcpace):
	// a replica with few tenants then collects a few times a second
	// rather than a dozen. 0 leaves Go's pacing (GOGC) alone.
	GCHeadroomMB int `yaml:"gc_headroom_mb"`

	// InsecureNoAuth turns caller authentication off although a database
	// is configured: every caller may do anything any actor it names may.
	// It also allows a listen address beyond loopback without
	// authentication.
	InsecureNoAuth bool `yaml:"insecure_no_auth"`
	// RequireAuth turns caller authentication on when serving from memory
	// (with a database it is on unless InsecureNoAuth).
	RequireAuth bool `yaml:"require_auth"`
	// AuthRefresh is how often a replica reads the credentials again: a
	// credential revoked on another replica is refused within it.
	AuthRefresh time.Duration `yaml:"auth_refresh"`
	// ReplicaReconcile is how often a replica compares every tenant's
	// revision with the database, healing a lost notification.
	ReplicaReconcile time.Duration `yaml:"replica_reconcile"`
	// ReplicaStaleAfter is how long a replica may go without following
	// the database before its health turns NOT_SERVING.
	ReplicaStaleAfter time.Duration `yaml:"replica_stale_after"`
	// ReplicaOutageGrace is how long a replica that cannot reach the
	// database at all keeps reporting SERVING (internal/replica,
	// Options.OutageGrace): the database outage it rides out behind a load
	// balancer that follows health. 0, the default, keeps the strict rule:
	// NOT_SERVING after ReplicaStaleAfter whatever the cause, since a
	// replica cut off from a database the others reach cannot tell.
	ReplicaOutageGrace time.Duration `yaml:"replica_outage_grace"`
	// MaxRevisionWait bounds how long a read with at_least_revision waits
	// for this replica to catch up (the request's deadline bounds it too).
	MaxRevisionWait time.Duration `yaml:"max_revision_wait"`
	// TLSCert and TLSKey are PEM files of the server's certificate and
	// key: set both to serve TLS. Re-read when they change on disk.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// TLSClientCA is a PEM file of the CAs client certificates must chain
	// to: set, every connection needs a verified client certificate, and
	// a certificate's identity (first URI SAN, else common name)
	// authenticates a caller registered with CreateKey
	// certificate_identity.
	TLSClientCA string `yaml:"tls_client_ca"`

	// DecisionLog is the decision log's mode: "async" (the call does not
	// wait for the write), "sync" (the call waits until its entry is
	// durable) or "off".
	DecisionLog string `yaml:"decision_log"`
	// DecisionLogQueueSize bounds the entries waiting to be written.
	DecisionLogQueueSize int `yaml:"decision_log_queue_size"`
	// DecisionLogBatchSize bounds the entries of one write.
	DecisionLogBatchSize int `yaml:"decision_log_batch_size"`
	// DecisionLogFlushInterval bounds, in the async mode, how long an entry
	// waits for its batch to fill.
	DecisionLogFlushInterval time.Duration `yaml:"decision_log_flush_interval"`
	// DecisionLogOverflow is what a full queue does to a new decision:
	// "block" (wait for room; nothing is lost) or "drop_denies_last" (never
	// wait; drop allowed decisions first, denied ones only when the queue
	// holds nothing else; every drop is counted, logged and marked in the
	// log).
	DecisionLogOverflow string `yaml:"decision_log_overflow"`
	// DecisionLogRetentionDays is how many days PostgreSQL keeps decisions
	// (whole daily partitions are dropped) and security events; 0 keeps
	// them forever.
	DecisionLogRetentionDays int `yaml:"decision_log_retention_days"`
	// DecisionLogMemoryEntries bounds the decisions kept when serving from
	// memory; the oldest are evicted.
	DecisionLogMemoryEntries int `yaml:"decision_log_memory_entries"`
	// DecisionSpoolDir is where the decision log spools decisions on local
	// disk (PostgreSQL, async mode) before they reach the database: a
	// process crash or a database outage loses none. "off" spools nothing
	// (decisions wait in memory, bounded by the queue). In Kubernetes, an
	// emptyDir volume: it outlives a container's restart.
	DecisionSpoolDir string `yaml:"decision_spool_dir"`
	// DecisionSpoolMaxMB bounds the spool, in MiB: the outage it rides
	// out (about 170 bytes a decision). Past it the overflow policy applies.
	DecisionSpoolMaxMB int `yaml:"decision_spool_max_mb"`
	// DecisionSpoolSyncInterval is how often the spool is synced to disk:
	// what a machine crash (not a process crash) can lose.
	DecisionSpoolSyncInterval time.Duration `yaml:"decision_spool_sync_interval"`
	// AuditKeyFile holds the audit keys (JSON, readable by its owner
	// only): the HMAC keys that link both logs' entries and seal their
	// heads, and the Ed25519 keys that sign checkpoints. Every replica of a
	// database needs the same file; `authzd audit-keys rotate` adds keys.
	// On PostgreSQL a missing file is created with new keys (keep a copy:
	// without it the logs cannot be verified). From memory, unset means
	// keys that die with the process.
	AuditKeyFile string `yaml:"audit_key_file"`
	// AuditCheckpointInterval is how often the service issues a signed
	// checkpoint of every chain's head (PostgreSQL); 0 never.
	AuditCheckpointInterval time.Duration `yaml:"audit_checkpoint_interval"`
	// DecisionLogMask lists the request attributes stored as keyed hashes
	// instead of their values: subject, caller, record_id, record_owner,
	// record_department.
	DecisionLogMask []string `yaml:"decision_log_mask"`
	// DecisionLogMaskKey is the secret HMAC key of masking, at least 16
	// bytes; required when DecisionLogMask is set. Keep it stable: filters
	// by a masked attribute match only entries masked with the same key.
	DecisionLogMaskKey string `yaml:"decision_log_mask_key"`
}

// maskAttributes are the attributes DecisionLogMask accepts (the audit
// package's MaskAttributes).
var maskAttributes = []string{"subject", "caller", "record_id", "record_owner", "record_department"}

// Default returns the defaults: the embedded in-memory server on :50051.
func Default() Config {
	return Config{
		SeedDemo:         "auto",
		LogLevel:         "info",
		LogFormat:        "json",
		MaxBatchChecks:   1000,
		MaxRecvBytes:     4 << 20,
		ShutdownTimeout:  15 * time.Second,
		GCHeadroomMB:     64,
		TraceSampleRatio: 0.1,
		AuthRefresh:      2 * time.Second,

		ReplicaReconcile:  10 * time.Second,
		ReplicaStaleAfter: 10 * time.Second,
		MaxRevisionWait:   2 * time.Second,

		DecisionLog:               "async",
		DecisionLogQueueSize:      16384,
		DecisionLogBatchSize:      2000,
		DecisionLogFlushInterval:  200 * time.Millisecond,
		DecisionLogOverflow:       "block",
		DecisionLogRetentionDays:  90,
		DecisionLogMemoryEntries:  100000,
		DecisionSpoolDir:          filepath.Join(os.TempDir(), "crmauthz-spool"),
		DecisionSpoolMaxMB:        2048,
		DecisionSpoolSyncInterval: time.Second,
		AuditCheckpointInterval:   15 * time.Minute,
	}
}

// DefaultAuditKeyFile is where the audit keys are kept when no file is
// configured and the store is PostgreSQL: in the user's configuration
// directory.
func DefaultAuditKeyFile() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "crmauthz", "audit-keys.json")
}

// field binds one setting to its flag, environment variable and target.
type field struct {
	flag, env, usage string
	set              func(string) error
	get              func() string
	secret           bool
	boolean          bool // a flag given without a value means true
}

func (c *Config) fields() []field {
	str := func(p *string) (func(string) error, func() string) {
		return func(s string) error { *p = s; return nil }, func() string { return *p }
	}
	num := func(p *int) (func(string) error, func() string) {
		return func(s string) error {
				n, err := strconv.Atoi(s)
				*p = n
				return err
			}, func() string {
				return strconv.Itoa(*p)
			}
	}
	var out []field
	add := func(name, usage string, set func(string) error, get func() string) {
		out = append(out, field{flag: name, env: "AUTHZ_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")), usage: usage, set: set, get: get})
	}
	boolean := func(p *bool) (func(string) error, func() string) {
		return func(s string) error {
				b, err := strconv.ParseBool(s)
				*p = b
				return err
			}, func() string {
				return strconv.FormatBool(*p)
			}
	}
	s, g := str(&c.ListenAddr)
	add("listen-addr", "gRPC listen address, host:port; default :50051 with authentication, 127.0.0.1:50051 without", s, g)
	s, g = str(&c.MetricsAddr)
	add("metrics-addr", "operator HTTP address, host:port: Prometheus metrics at /metrics, pprof at /debug/pprof/; empty serves neither", s, g)
	s, g = str(&c.OTLPEndpoint)
	add("otlp-endpoint", "OpenTelemetry collector, host:port: export traces over OTLP/gRPC; empty traces nothing", s, g)
	b, bg := boolean(&c.OTLPInsecure)
	add("otlp-insecure", "send traces to the collector without TLS", b, bg)
	out[len(out)-1].boolean = true
	add("trace-sample-ratio", "share of the traces started here that are exported, 0-1 (a caller's sampled trace is followed)", func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		c.TraceSampleRatio = f
		return err
	}, func() string { return strconv.FormatFloat(c.TraceSampleRatio, 'g', -1, 64) })
	s, g = str(&c.HTTPAddr)
	add("http-addr", "AuthZEN HTTP address, host:port: /access/v1/evaluation(s) and /.well-known/authzen-configuration, authenticated like gRPC; empty serves none", s, g)
	s, g = str(&c.DatabaseURL)
	add("database-url", "PostgreSQL URL or key=value string; empty serves from memory", s, g)
	out[len(out)-1].secret = true
	s, g = str(&c.ListenDatabaseURL)
	add("listen-database-url", "PostgreSQL of the replica's listening connection when not --database-url (a pooler in front of it that gives no sessions)", s, g)
	out[len(out)-1].secret = true
	s, g = str(&c.PoliciesDir)
	add("policies-dir", "read the policy bundle from this directory instead of the embedded one", s, g)
	s, g = str(&c.SeedDemo)
	add("seed-demo", "create the demo tenant at start when missing: auto (memory only), true, false", s, g)
	s, g = str(&c.LogLevel)
	add("log-level", "debug, info, warn or error", s, g)
	s, g = str(&c.LogFormat)
	add("log-format", "json or console", s, g)
	s, g = num(&c.MaxBatchChecks)
	add("max-batch-checks", "most items in one BatchCheck, and permissions and records in one CheckPage, 1-100000", s, g)
	s, g = num(&c.MaxRecvBytes)
	add("max-recv-bytes", "largest request message in bytes, at least 1024", s, g)
	add("shutdown-timeout", "how long running calls may finish at a stop, then again how long the decision log may take to write what it holds, e.g. 15s", func(v string) error {
		d, err := time.ParseDuration(v)
		c.ShutdownTimeout = d
		return err
	}, func() string { return c.ShutdownTimeout.String() })
	s, g = num(&c.GCHeadroomMB)
	add("gc-headroom-mb", "room in MiB the garbage collector leaves above the live heap once serving; 0 leaves GOGC alone, 0-65536", s, g)
	s, g = boolean(&c.InsecureNoAuth)
	add("insecure-no-auth", "serve without authenticating callers even with a database, on any listen address (unsafe: anyone reaching the port may do anything)", s, g)
	out[len(out)-1].boolean = true
	s, g = boolean(&c.RequireAuth)
	add("require-auth", "authenticate callers when serving from memory too", s, g)
	out[len(out)-1].boolean = true
	add("auth-refresh", "how often the credentials are read again (a revocation elsewhere takes effect within it), 100ms-1m", func(v string) error {
		d, err := time.ParseDuration(v)
		c.AuthRefresh = d
		return err
	}, func() string { return c.AuthRefresh.String() })
	add("replica-reconcile", "how often a replica compares every tenant's revision with the database, 100ms-10m", func(v string) error {
		d, err := time.ParseDuration(v)
		c.ReplicaReconcile = d
		return err
	}, func() string { return c.ReplicaReconcile.String() })
	add("replica-stale-after", "how long a replica may go without following the database before health reports NOT_SERVING, 1s-10m", func(v string) error {
		d, err := time.ParseDuration(v)
		c.ReplicaStaleAfter = d
		return err
	}, func() string { return c.ReplicaStaleAfter.String() })
	add("replica-outage-grace", "how long a replica that cannot reach the database at all keeps reporting SERVING, 0-24h; 0 (strict): --replica-stale-after alone", func(v string) error {
		d, err := time.ParseDuration(v)
		c.ReplicaOutageGrace = d
		return err
	}, func() string { return c.ReplicaOutageGrace.String() })
	add("max-revision-wait", "longest a read with at_least_revision waits for this replica to catch up, 0-1m", func(v string) error {
		d, err := time.ParseDuration(v)
		c.MaxRevisionWait = d
		return err
	}, func() string { return c.MaxRevisionWait.String() })
	s, g = str(&c.TLSCert)
	add("tls-cert", "PEM file of the server certificate; with --tls-key serves TLS", s, g)
	s, g = str(&c.TLSKey)
	add("tls-key", "PEM file of the server key", s, g)
	s, g = str(&c.TLSClientCA)
	add("tls-client-ca", "PEM file of the CAs client certificates must chain to; requires client certificates", s, g)
	s, g = str(&c.DecisionLog)
	add("decision-log", "decision log mode: async, sync or off", s, g)
	s, g = num(&c.DecisionLogQueueSize)
	add("decision-log-queue-size", "most decisions waiting to be written, 1-1048576", s, g)
	s, g = num(&c.DecisionLogBatchSize)
	add("decision-log-batch-size", "most decisions in one write, 1-10000 and at most the queue size", s, g)
	add("decision-log-flush-interval", "async: longest wait for a batch to fill, 1ms-1m, e.g. 200ms", func(v string) error {
		d, err := time.ParseDuration(v)
		c.DecisionLogFlushInterval = d
		return err
	}, func() string { return c.DecisionLogFlushInterval.String() })
	s, g = str(&c.DecisionLogOverflow)
	add("decision-log-overflow", "when the queue is full: block or drop_denies_last", s, g)
	s, g = num(&c.DecisionLogRetentionDays)
	add("decision-log-retention-days", "days PostgreSQL keeps decisions and security events, 0-3650; 0 forever", s, g)
	s, g = num(&c.DecisionLogMemoryEntries)
	add("decision-log-memory-entries", "most decisions kept when serving from memory, 1-10000000", s, g)
	s, g = str(&c.DecisionSpoolDir)
	add("decision-spool-dir", "directory of the decision spool on local disk (PostgreSQL, async); off: none", s, g)
	s, g = num(&c.DecisionSpoolMaxMB)
	add("decision-spool-max-mb", "bound of the decision spool in MiB (about 170 bytes a decision), 1-1048576", s, g)
	add("decision-spool-sync-interval", "how often the spool is synced to disk: what a machine crash can lose, 10ms-1m", func(v string) error {
		d, err := time.ParseDuration(v)
		c.DecisionSpoolSyncInterval = d
		return err
	}, func() string { return c.DecisionSpoolSyncInterval.String() })
	s, g = str(&c.AuditKeyFile)
	add("audit-key-file", "file of the audit keys (link, seal, sign); PostgreSQL default: "+DefaultAuditKeyFile()+", created if missing", s, g)
	add("audit-checkpoint-interval", "how often a signed checkpoint of every chain's head is issued (PostgreSQL), 0 or 1m-24h", func(v string) error {
		d, err := time.ParseDuration(v)
		c.AuditCheckpointInterval = d
		return err
	}, func() string { return c.AuditCheckpointInterval.String() })
	add("decision-log-mask", "comma-separated attributes stored hashed: subject, caller, record_id, record_owner, record_department", func(v string) error {
		c.DecisionLogMask = nil
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.DecisionLogMask = append(c.DecisionLogMask, a)
			}
		}
		return nil
	}, func() string { return strings.Join(c.DecisionLogMask, ",") })
	s, g = str(&c.DecisionLogMaskKey)
	add("decision-log-mask-key", "secret HMAC key of masking, at least 16 bytes; required with --decision-log-mask", s, g)
	out[len(out)-1].secret = true
	return out
}

// Load builds the configuration from a subcommand's arguments and the
// environment: defaults, then the YAML file named by --config or
// AUTHZ_CONFIG, then AUTHZ_* variables, then flags.
func Load(name string, args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", getenv("AUTHZ_CONFIG"), "YAML configuration file (env AUTHZ_CONFIG)")
	fields := c.fields()
	values := map[string]*string{}
	for _, f := range fields {
		v := &flagValue{s: f.get(), boolean: f.boolean}
		fs.Var(v, f.flag, fmt.Sprintf("%s (env %s)", f.usage, f.env))
		values[f.flag] = &v.s
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *configFile != "" {
		data, err := os.ReadFile(*configFile)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("parse config %s: %w", *configFile, err)
		}
		// A second document would be skipped unread, unknown keys and all.
		if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("parse config %s: must hold one YAML document", *configFile)
		}
	}
	for _, f := range fields {
		if v := getenv(f.env); v != "" {
			if err := f.set(v); err != nil {
				return c, fmt.Errorf("%s: %w", f.env, err)
			}
		}
	}
	var err error
	fs.Visit(func(fl *flag.Flag) {
		for _, f := range fields {
			if f.flag == fl.Name && err == nil {
				if e := f.set(*values[f.flag]); e != nil {
					err = fmt.Errorf("--%s: %w", f.flag, e)
				}
			}
		}
	})
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

// flagValue is a flag's text; a boolean one may be given without a value.
type flagValue struct {
	s       string
	boolean bool
}

func (v *flagValue) String() string { return v.s }

func (v *flagValue) Set(s string) error { v.s = s; return nil }

func (v *flagValue) IsBoolFlag() bool { return v.boolean }

// Validate checks the configuration's values.
func (c Config) Validate() error {
	var errs []error
	if c.ListenAddr != "" {
		if err := validateListenAddr(c.ListenAddr); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MetricsAddr != "" {
		if err := validateListenAddr(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("metrics_addr: %w", err))
		}
		if c.MetricsAddr == c.ListenAddr || c.MetricsAddr == c.HTTPAddr {
			errs = append(errs, errors.New("metrics_addr must differ from listen_addr and http_addr: metrics have a port of their own"))
		}
	}
	if c.TraceSampleRatio < 0 || c.TraceSampleRatio > 1 {
		errs = append(errs, fmt.Errorf("trace_sample_ratio must be 0-1, got %g", c.TraceSampleRatio))
	}
	if c.HTTPAddr != "" {
		if err := validateListenAddr(c.HTTPAddr); err != nil {
			errs = append(errs, fmt.Errorf("http_addr: %w", err))
		}
		if c.HTTPAddr == c.ListenAddr {
			errs = append(errs, errors.New("http_addr must differ from listen_addr"))
		}
	}
	errs = append(errs, c.validateAuth()...)
	if c.ListenDatabaseURL != "" && c.DatabaseURL == "" {
		errs = append(errs, errors.New("listen_database_url needs database_url: a replica listens only when it serves from PostgreSQL"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level must be debug, info, warn or error, got %q", c.LogLevel))
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		errs = append(errs, fmt.Errorf("log_format must be json or console, got %q", c.LogFormat))
	}
	switch c.SeedDemo {
	case "auto", "true", "false":
	default:
		errs = append(errs, fmt.Errorf("seed_demo must be auto, true or false, got %q", c.SeedDemo))
	}
	if c.MaxBatchChecks < 1 || c.MaxBatchChecks > 100000 {
		errs = append(errs, fmt.Errorf("max_batch_checks must be 1-100000, got %d", c.MaxBatchChecks))
	}
	if c.GCHeadroomMB < 0 || c.GCHeadroomMB > 1<<16 {
		errs = append(errs, fmt.Errorf("gc_headroom_mb must be 0-65536, got %d", c.GCHeadroomMB))
	}
	if c.MaxRecvBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_recv_bytes must be at least 1024, got %d", c.MaxRecvBytes))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout must be positive, got %s", c.ShutdownTimeout))
	}
	errs = append(errs, c.validateDecisionLog()...)
	return errors.Join(errs...)
}

// validateListenAddr checks a listen address the way net.Listen reads it,
// host:port with a port number or name, without resolving the host.
func validateListenAddr(addr string) error {
	if addr == "" {
		return errors.New("listen_addr must not be empty")
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = net.LookupPort("tcp", port)
	}
	if err != nil {
		return fmt.Errorf("listen_addr must be host:port, got %q: %w", addr, err)
	}
	return nil
}

func (c Config) validateDecisionLog() []error {
	var errs []error
	switch c.DecisionLog {
	case "off", "async", "sync":
	default:
		errs = append(errs, fmt.Errorf("decision_log must be off, async or sync, got %q", c.DecisionLog))
	}
	if c.DecisionLogQueueSize < 1 || c.DecisionLogQueueSize > 1<<20 {
		errs = append(errs, fmt.Errorf("decision_log_queue_size must be 1-1048576, got %d", c.DecisionLogQueueSize))
	}
	if c.DecisionLogBatchSize < 1 || c.DecisionLogBatchSize > 10000 || c.DecisionLogBatchSize > c.DecisionLogQueueSize {
		errs = append(errs, fmt.Errorf("decision_log_batch_size must be 1-10000 and at most decision_log_queue_size, got %d", c.DecisionLogBatchSize))
	}
	if c.DecisionLogFlushInterval < time.Millisecond || c.DecisionLogFlushInterval > time.Minute {
		errs = append(errs, fmt.Errorf("decision_log_flush_interval must be 1ms-1m, got %s", c.DecisionLogFlushInterval))
	}
	switch c.DecisionLogOverflow {
	case "block", "drop_denies_last":
	default:
		errs = append(errs, fmt.Errorf("decision_log_overflow must be block or drop_denies_last, got %q", c.DecisionLogOverflow))
	}
	if c.DecisionLogRetentionDays < 0 || c.DecisionLogRetentionDays > 3650 {
		errs = append(errs, fmt.Errorf("decision_log_retention_days must be 0-3650, got %d", c.DecisionLogRetentionDays))
	}
	if d := c.AuditCheckpointInterval; d != 0 && (d < time.Minute || d > 24*time.Hour) {
		errs = append(errs, fmt.Errorf("audit_checkpoint_interval must be 0 or 1m-24h, got %s", d))
	}
	if c.DecisionSpoolDir == "" {
		errs = append(errs, errors.New(`decision_spool_dir must name a directory, or be "off"`))
	}
	if c.DecisionSpoolMaxMB < 1 || c.DecisionSpoolMaxMB > 1<<20 {
		errs = append(errs, fmt.Errorf("decision_spool_max_mb must be 1-1048576, got %d", c.DecisionSpoolMaxMB))
	}
	if c.DecisionSpoolSyncInterval < 10*time.Millisecond || c.DecisionSpoolSyncInterval > time.Minute {
		errs = append(errs, fmt.Errorf("decision_spool_sync_interval must be 10ms-1m, got %s", c.DecisionSpoolSyncInterval))
	}
	if c.DecisionLogMemoryEntries < 1 || c.DecisionLogMemoryEntries > 10_000_000 {
		errs = append(errs, fmt.Errorf("decision_log_memory_entries must be 1-10000000, got %d", c.DecisionLogMemoryEntries))
	}
	for _, a := range c.DecisionLogMask {
		if !slices.Contains(maskAttributes, a) {
			errs = append(errs, fmt.Errorf("decision_log_mask: unknown attribute %q; use %s", a, strings.Join(maskAttributes, ", ")))
		}
	}
	if len(c.DecisionLogMask) > 0 && len(c.DecisionLogMaskKey) < 16 {
		errs = append(errs, errors.New("decision_log_mask_key must be set, at least 16 bytes, when decision_log_mask is"))
	}
	return errs
}

func (c Config) validateAuth() []error {
	var errs []error
	if c.InsecureNoAuth && c.RequireAuth {
		errs = append(errs, errors.New("insecure_no_auth and require_auth contradict each other"))
	}
	if c.ReplicaReconcile < 100*time.Millisecond || c.ReplicaReconcile > 10*time.Minute {
		errs = append(errs, fmt.Errorf("replica_reconcile must be 100ms-10m, got %s", c.ReplicaReconcile))
	}
	if c.ReplicaOutageGrace < 0 || c.ReplicaOutageGrace > 24*time.Hour {
		errs = append(errs, fmt.Errorf("replica_outage_grace must be 0-24h, got %s", c.ReplicaOutageGrace))
	}
	if c.ReplicaStaleAfter < time.Second || c.ReplicaStaleAfter > 10*time.Minute {
		errs = append(errs, fmt.Errorf("replica_stale_after must be 1s-10m, got %s", c.ReplicaStaleAfter))
	}
	if c.MaxRevisionWait < 0 || c.MaxRevisionWait > time.Minute {
		errs = append(errs, fmt.Errorf("max_revision_wait must be 0-1m, got %s", c.MaxRevisionWait))
	}
	if c.AuthRefresh < 100*time.Millisecond || c.AuthRefresh > time.Minute {
		errs = append(errs, fmt.Errorf("auth_refresh must be 100ms-1m, got %s", c.AuthRefresh))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key must be set together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("tls_client_ca needs tls_cert and tls_key: client certificates are asked for in a TLS handshake"))
	}
	if !c.AuthEnabled() && !c.InsecureNoAuth && c.ListenAddr != "" && !loopback(c.ListenAddr) {
		errs = append(errs, fmt.Errorf("listen_addr %q is beyond loopback but callers are not authenticated: configure a database (authentication is then on), --require-auth, or say --insecure-no-auth to serve unauthenticated anyway", c.ListenAddr))
	}
	return errs
}

// AuthEnabled reports whether callers must authenticate: with a database
// unless InsecureNoAuth, from memory only with RequireAuth.
func (c Config) AuthEnabled() bool {
	if c.InsecureNoAuth {
		return false
	}
	return c.DatabaseURL != "" || c.RequireAuth
}

// Listen returns the address to listen on: ListenAddr, else port 50051 on
// every interface with authentication and on loopback without.
func (c Config) Listen() string {
	switch {
	case c.ListenAddr != "":
		return c.ListenAddr
	case c.AuthEnabled() || c.InsecureNoAuth:
		return ":50051"
	}
	return "127.0.0.1:50051"
}

// loopback reports whether a listen address binds loopback only: a
// loopback IP or the name localhost. An empty host (every interface) or
// any other name is not.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ShouldSeedDemo reports whether the demo tenant is to be created at start.
func (c Config) ShouldSeedDemo() bool {
	return c.SeedDemo == "true" || (c.SeedDemo == "auto" && c.DatabaseURL == "")
}

// Redacted returns the configuration as key/value pairs for the start-up
// log, with secrets (the database password) hidden.
func (c Config) Redacted() map[string]string {
	out := map[string]string{}
	for _, f := range c.fields() {
		v := f.get()
		switch {
		case f.secret && v != "" && (f.flag == "database-url" || f.flag == "listen-database-url"):
			v = redactURL(v)
		case f.secret && v != "":
			v = "(set, hidden)"
		}
		out[strings.ReplaceAll(f.flag, "-", "_")] = v
	}
	return out
}

// redactURL shows a postgres:// URL without its passwords (the user's and
// the client key's); anything else, such as a key=value string, is hidden.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "(set, not a URL: hidden)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}
