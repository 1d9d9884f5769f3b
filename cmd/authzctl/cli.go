package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/crmauthz/crmauthz/internal/auth"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// cli is one invocation of authzctl: the global settings, standard input,
// the output collected for stdout and, once a command has parsed its
// arguments, the connection to authzd.
type cli struct {
	addr, tenant, actor, reason, output string
	timeout                             time.Duration
	// How authzctl authenticates: an API key, TLS with a CA and
	// optionally a client certificate.
	apiKey, tlsCA, tlsCert, tlsKey string
	tls                            bool

	stdin io.Reader
	out   strings.Builder // the command's output, written to stdout at the end

	conn  *grpc.ClientConn
	authz pb.AuthorizationServiceClient
	admin pb.AdminServiceClient
	// governance is the GovernanceService: access requests, who can, expiry.
	governance pb.GovernanceServiceClient
	audit      pb.AuditServiceClient
	platform   pb.PlatformServiceClient
}

// init reads the global settings from the environment and from the flags
// before the command, and returns the rest of args: the command and its
// arguments.
func (c *cli) init(args []string) ([]string, error) {
	c.addr, c.tenant, c.actor = os.Getenv("AUTHZ_ADDR"), os.Getenv("AUTHZ_TENANT"), os.Getenv("AUTHZ_ACTOR")
	c.apiKey, c.tlsCA = os.Getenv("AUTHZ_API_KEY"), os.Getenv("AUTHZ_TLS_CA")
	c.tlsCert, c.tlsKey = os.Getenv("AUTHZ_TLS_CERT"), os.Getenv("AUTHZ_TLS_KEY")
	if c.addr == "" {
		c.addr = "localhost:50051"
	}
	c.output, c.timeout = "text", 10*time.Second
	fs := flag.NewFlagSet("authzctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.globalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.out.WriteString(synopsis)
			return nil, err
		}
		return nil, usagef("", "%v", err)
	}
	return fs.Args(), nil
}

// globalFlags adds the global flags to fs. Their defaults are the values
// already set, so a command's flag set keeps what the environment and the
// flags before the command said.
func (c *cli) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", c.addr, "the authzd address `host:port` (env AUTHZ_ADDR)")
	fs.StringVar(&c.tenant, "tenant", c.tenant, "the tenant `id` (env AUTHZ_TENANT)")
	fs.StringVar(&c.actor, "actor", c.actor, "the acting `user`, whose rights the server checks and records (env AUTHZ_ACTOR)")
	fs.StringVar(&c.reason, "reason", c.reason, "why, recorded with every write; required for writes")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "deadline of the whole command")
	fs.StringVar(&c.output, "output", c.output, "output `format`: text or json")
	fs.StringVar(&c.apiKey, "api-key", c.apiKey, "the API `key` to call with (env AUTHZ_API_KEY; prefer the variable: flags show in process lists)")
	fs.BoolVar(&c.tls, "tls", c.tls, "connect with TLS, verifying the server with the system's CAs")
	fs.StringVar(&c.tlsCA, "tls-ca", c.tlsCA, "connect with TLS, verifying the server with the CAs of this PEM `file` (env AUTHZ_TLS_CA)")
	fs.StringVar(&c.tlsCert, "tls-cert", c.tlsCert, "client certificate PEM `file` for mutual TLS (env AUTHZ_TLS_CERT)")
	fs.StringVar(&c.tlsKey, "tls-key", c.tlsKey, "client key PEM `file` for mutual TLS (env AUTHZ_TLS_KEY)")
}

// globalNames are the flags every command accepts besides its own.
var globalNames = []string{"addr", "tenant", "actor", "reason", "timeout", "output", "api-key", "tls", "tls-ca", "tls-cert", "tls-key"}

// command is the parsing state of one (sub)command.
type command struct {
	c    *cli
	name string // as typed after authzctl, e.g. "roles create"
	help string // usage lines, a description and examples
	fs   *flag.FlagSet
}

// command starts parsing the command name; the caller adds its flags to
// cmd.fs and then calls cmd.parse.
func (c *cli) command(name, help string) *command {
	fs := flag.NewFlagSet("authzctl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &command{c: c, name: name, help: help, fs: fs}
}

// parse parses args, in which flags and positional arguments may come in
// any order ("--" ends the flags), checks that there are between minArgs
// and maxArgs positional arguments, and validates the global settings.
// With -h it prints the command's help to stdout and returns flag.ErrHelp.
func (cmd *command) parse(args []string, minArgs, maxArgs int) ([]string, error) {
	cmd.c.globalFlags(cmd.fs)
	var pos []string
	for {
		if err := cmd.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				cmd.printHelp()
				return nil, err
			}
			return nil, usagef(cmd.name, "%v", err)
		}
		rest := cmd.fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < minArgs:
		return nil, usagef(cmd.name, "%s: missing arguments", cmd.name)
	case len(pos) > maxArgs:
		return nil, usagef(cmd.name, "%s: unexpected argument %q", cmd.name, pos[maxArgs])
	case cmd.c.output != "text" && cmd.c.output != "json":
		return nil, usagef(cmd.name, "--output must be text or json, not %q", cmd.c.output)
	case cmd.c.timeout <= 0:
		return nil, usagef(cmd.name, "--timeout must be positive")
	case cmd.c.addr == "":
		return nil, usagef(cmd.name, "--addr must not be empty")
	}
	return pos, nil
}

// printHelp prints the command's help and its own flags; the global flags
// are described by `authzctl -h`.
func (cmd *command) printHelp() {
	w := &cmd.c.out
	w.WriteString(cmd.help)
	var flags strings.Builder
	own := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	own.SetOutput(&flags)
	cmd.fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(globalNames, f.Name) {
			own.Var(f.Value, f.Name, f.Usage)
			own.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	own.PrintDefaults()
	if flags.Len() > 0 {
		w.WriteString("\nFlags:\n")
		// Spelled with two dashes, as everywhere else in authzctl's help.
		for line := range strings.Lines(flags.String()) {
			if strings.HasPrefix(line, "  -") {
				line = "  -" + line[2:]
			}
			w.WriteString(line)
		}
	}
	fmt.Fprintf(w, "\nGlobal flags (--%s) may come before or after the command; see 'authzctl -h'.\n",
		strings.Join(globalNames, ", --"))
}

// subcommand splits the subcommand of a command group (roles,
// departments, rules, audit) from args. With none, or only flags, it is def; a
// lone -h prints the group's help and returns flag.ErrHelp.
func (c *cli) subcommand(args []string, def, help string) (string, []string, error) {
	if len(args) == 0 {
		return def, args, nil
	}
	switch args[0] {
	case "-h", "-help", "--h", "--help":
		c.out.WriteString(help)
		return "", nil, flag.ErrHelp
	}
	if strings.HasPrefix(args[0], "-") {
		return def, args, nil
	}
	return args[0], args[1:], nil
}

// needTenant refuses a command line without a tenant.
func (cmd *command) needTenant() error {
	if cmd.c.tenant == "" {
		return usagef(cmd.name, "%s: --tenant (or AUTHZ_TENANT) is required", cmd.name)
	}
	return nil
}

// needWriter refuses a write without a tenant, an actor or a reason: the
// change log records who changed what and why.
func (cmd *command) needWriter() error {
	if err := cmd.needTenant(); err != nil {
		return err
	}
	// With a credential the server knows who acts: a bound key's user, or
	// the platform operator; a service key's missing actor it refuses.
	if cmd.c.actor == "" && cmd.c.apiKey == "" && cmd.c.tlsCert == "" {
		return usagef(cmd.name, "%s: --actor (or AUTHZ_ACTOR) is required for writes", cmd.name)
	}
	if strings.TrimSpace(cmd.c.reason) == "" {
		return usagef(cmd.name, "%s: --reason is required for writes", cmd.name)
	}
	return nil
}

// connect opens the connection to authzd and returns ctx bounded by
// --timeout. The connection is closed when run returns.
func (c *cli) connect(ctx context.Context) (context.Context, context.CancelFunc, error) {
	opts, err := c.dialOptions()
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(c.addr, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	c.conn = conn
	c.authz = pb.NewAuthorizationServiceClient(conn)
	c.admin = pb.NewAdminServiceClient(conn)
	c.governance = pb.NewGovernanceServiceClient(conn)
	c.audit = pb.NewAuditServiceClient(conn)
	c.platform = pb.NewPlatformServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	return ctx, cancel, nil
}

// dialOptions says how authzctl reaches authzd: TLS when --tls, --tls-ca or
// a client certificate is given, else plaintext; an API key with every
// call when one is given. A key is never sent in plaintext beyond
// loopback.
func (c *cli) dialOptions() ([]grpc.DialOption, error) {
	opts := []grpc.DialOption{grpc.WithUserAgent("authzctl")}
	useTLS := c.tls || c.tlsCA != "" || c.tlsCert != ""
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, usagef("", "--tls-cert and --tls-key go together")
	}
	if useTLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.tlsCA != "" {
			pem, err := os.ReadFile(c.tlsCA)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca: %s holds no PEM certificate", c.tlsCA)
			}
		}
		if c.tlsCert != "" {
			pair, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
			if err != nil {
				return nil, fmt.Errorf("--tls-cert, --tls-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if c.apiKey != "" {
		if !useTLS && !loopback(c.addr) {
			return nil, usagef("", "refusing to send an API key without TLS to %s: use --tls or --tls-ca", c.addr)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(auth.Bearer(strings.TrimSpace(c.apiKey), !useTLS)))
	}
	return opts, nil
}

// loopback reports whether addr names this machine.
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

// close closes the connection, if one was opened.
func (c *cli) close() {
	if c.conn != nil {
		_ = c.conn.Close()
	}
}

// parseTime reads the time given to the flag name: an RFC 3339 time, a date
// (midnight UTC) or a positive duration counted from now, forward when ahead
// (a grant's end) and back otherwise (the start of an audit window).
func parseTime(name, s string, now time.Time, ahead bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("--%s %q is neither an RFC 3339 time, a date (2006-01-02) nor a positive duration (72h)", name, s)
	}
	if !ahead {
		d = -d
	}
	return now.Add(d), nil
}
