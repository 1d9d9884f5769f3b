package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/service"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
)

const keysUsage = `Usage: authzd keys create|list|revoke --database-url URL [flags]

Manages the credentials callers authenticate with, straight in PostgreSQL:
the first platform key of a new deployment, or a key when no server runs.
A key created here works at once on running servers.

  authzd keys create --name NAME --scopes check,admin,audit,platform
                     [--tenants t1,t2] [--user USER] [--expires 720h]
                     [--certificate-identity ID]
      prints the new key's details, then the key itself alone on the last
      line of stdout (shown once: only its hash is stored); with
      --certificate-identity registers a client certificate identity
      instead, and prints no key
  authzd keys list [--all]
      the credentials (--all: revoked ones too), without secrets
  authzd keys revoke --reason TEXT KEY_ID
      revokes a credential: running servers refuse it within their
      --auth-refresh interval (2s by default)

--database-url also comes from AUTHZ_DATABASE_URL.
`

// runKeys runs `authzd keys ...`.
func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		_, _ = io.WriteString(stderr, keysUsage)
		if len(args) == 0 {
			return errors.New("keys: name a subcommand: create, list or revoke")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("authzd keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { _, _ = io.WriteString(stderr, keysUsage) }
	url := fs.String("database-url", getenv("AUTHZ_DATABASE_URL"), "PostgreSQL URL (env AUTHZ_DATABASE_URL)")
	var (
		name, scopes, tenants, user, expires, identity, reason string
		all                                                    bool
	)
	switch sub {
	case "create":
		fs.StringVar(&name, "name", "", "the credential's name (a platform credential acts as platform:<name>)")
		fs.StringVar(&scopes, "scopes", "", "comma-separated: check, admin, audit, platform")
		fs.StringVar(&tenants, "tenants", "", "comma-separated tenants it may act in; required unless --scopes has platform")
		fs.StringVar(&user, "user", "", "bind it to this user of its one tenant (a personal key)")
		fs.StringVar(&expires, "expires", "", "how long it works, e.g. 720h; empty: until revoked")
		fs.StringVar(&identity, "certificate-identity", "", "register this client certificate identity (URI SAN or CN) instead of creating a key")
	case "list":
		fs.BoolVar(&all, "all", false, "list revoked credentials too")
	case "revoke":
		fs.StringVar(&reason, "reason", "", "why, for the security log")
	default:
		_, _ = io.WriteString(stderr, keysUsage)
		return fmt.Errorf("keys: unknown subcommand %q", sub)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *url == "" {
		return errors.New("keys: --database-url (or AUTHZ_DATABASE_URL) is required: credentials live in PostgreSQL")
	}
	pool, err := postgres.Connect(ctx, *url, zap.NewNop())
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		return err
	}
	st := postgres.New(pool, nil)
	defer st.Close()
	// Credential changes made here are security events like those made
	// through the API.
	events := audit.NewPostgresSecurityLog(pool, audit.SecurityOptions{})
	if err := events.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = events.Close(context.WithoutCancel(ctx)) }()
	switch sub {
	case "create":
		if fs.NArg() > 0 {
			return fmt.Errorf("keys create: unexpected arguments %v", fs.Args())
		}
		return createKey(ctx, st, events, name, scopes, tenants, user, expires, identity, stdout)
	case "list":
		return listKeys(ctx, st, all, stdout)
	default:
		if fs.NArg() != 1 {
			return errors.New("keys revoke: name one key id")
		}
		return revokeKey(ctx, st, events, fs.Arg(0), reason, stdout)
	}
}

func record(events *audit.SecurityLog, kind, actor, msg string, c store.Credential) {
	ev := audit.SecurityEvent{Kind: kind, Time: time.Now(), Actor: actor, Message: msg, Count: 1,
		Reason: strings.ToUpper(strings.ReplaceAll(kind, ".", "_"))}
	if len(c.Tenants) == 1 {
		ev.Tenant = c.Tenants[0]
	}
	events.Record(ev)
}

// createdBy is the creator a credential made offline records.
const createdBy = "authzd keys create"

func createKey(ctx context.Context, st store.Store, events *audit.SecurityLog, name, scopes, tenants, user, expires, identity string, stdout io.Writer) error {
	now := time.Now()
	spec := auth.Spec{Name: name, Scopes: splitList(scopes), Tenants: splitList(tenants), User: user, Certificate: identity}
	if expires != "" {
		d, err := time.ParseDuration(expires)
		if err != nil || d <= 0 {
			return fmt.Errorf("keys create: --expires %q is not a positive duration such as 720h", expires)
		}
		spec.ExpiresAt = now.Add(d)
	}
	if err := auth.ValidateSpec(spec, now); err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	c, secret, err := service.NewCredential(spec, createdBy, now)
	if err != nil {
		return err
	}
	if err := st.CreateCredential(ctx, c); err != nil {
		return err
	}
	record(events, audit.EventCredentialCreated, createdBy, fmt.Sprintf("created credential %s (%q) scopes %s tenants %s",
		c.ID, c.Name, strings.Join(c.Scopes, ","), tenantsText(c.Tenants)), c)
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	printKey(w, c)
	if err := w.Flush(); err != nil {
		return err
	}
	if secret == "" {
		return nil
	}
	_, err = fmt.Fprintf(stdout, "# the key, shown once (only its hash is stored):\n%s\n", secret)
	return err
}

func listKeys(ctx context.Context, st store.Store, all bool, stdout io.Writer) error {
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(w, "KEY ID\tNAME\tSCOPES\tTENANTS\tUSER\tEXPIRES\tREVOKED")
	after := ""
	for {
		page, err := st.Credentials(ctx, after, 500, all)
		if err != nil {
			return err
		}
		for _, c := range page {
			_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Name, strings.Join(c.Scopes, ","), tenantsText(c.Tenants),
				dash(c.User), timeText(c.ExpiresAt), timeText(c.RevokedAt))
			after = c.ID
		}
		if len(page) < 500 {
			return w.Flush()
		}
	}
}

func revokeKey(ctx context.Context, st store.Store, events *audit.SecurityLog, id, reason string, stdout io.Writer) error {
	if !auth.ValidCredentialID(id) {
		return fmt.Errorf("keys revoke: %q is not a key id (16 lowercase hex digits)", id)
	}
	if strings.TrimSpace(reason) == "" {
		return errors.New("keys revoke: --reason is required")
	}
	c, err := st.RevokeCredential(ctx, id, "authzd keys revoke", time.Now())
	if err != nil {
		return err
	}
	record(events, audit.EventCredentialRevoked, "authzd keys revoke", fmt.Sprintf("revoked credential %s (%q): %s", c.ID, c.Name, reason), c)
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	printKey(w, c)
	return w.Flush()
}

func printKey(w io.Writer, c store.Credential) {
	_, _ = fmt.Fprintf(w, "key id:\t%s\nname:\t%s\nscopes:\t%s\ntenants:\t%s\n", c.ID, c.Name, strings.Join(c.Scopes, ","), tenantsText(c.Tenants))
	if c.User != "" {
		_, _ = fmt.Fprintf(w, "user:\t%s\n", c.User)
	}
	if c.Certificate != "" {
		_, _ = fmt.Fprintf(w, "certificate identity:\t%s\n", c.Certificate)
	}
	_, _ = fmt.Fprintf(w, "expires:\t%s\n", timeText(c.ExpiresAt))
	if c.Revoked() {
		_, _ = fmt.Fprintf(w, "revoked:\t%s by %s\n", timeText(c.RevokedAt), c.RevokedBy)
	}
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func tenantsText(ts []string) string {
	if len(ts) == 0 {
		return "(every tenant)"
	}
	return strings.Join(ts, ",")
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
