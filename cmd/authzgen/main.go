// Command authzgen fills a PostgreSQL database with generated tenants of a
// realistic CRM shape (internal/datagen) for benchmarks and load tests:
//
//	authzgen --database-url URL --tenants N [--size small|medium|large|limits]
//	         [--users U] [--roles R] [--departments D] [--grants-per-user G]
//	         [--sharing-rules S] [--shares S] [--seed S] [--prefix gen]
//
// The tenants are <prefix>-0001, <prefix>-0002, ...; each is created through
// the store's own write path (one transaction, with its change-log entry),
// as authzd would. A tenant that exists already is skipped, so a rerun
// resumes where an interrupted one stopped. Progress goes to stderr, a
// summary to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	appconfig "github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "authzgen:", err)
		os.Exit(1)
	}
}

const usage = `Usage: authzgen --database-url URL --tenants N [flags]

Creates N generated tenants <prefix>-0001 ... in a migrated PostgreSQL
database (authzd migrate), through the store's write path, and skips those
that exist already, so a rerun resumes. --size picks a preset (small: 15
users; medium: 1,000 users, 40 roles, 100 departments; large: 50,000 users,
200 roles, 2,000 departments, 75,000 grants, 20,000 record shares; limits:
the largest tenant the service accepts, 100,000 users, 500 roles, 10,000
departments, 200,000 grants, 100,000 record shares); the other size flags
override it. The same --seed gives the same tenants (their
times follow the clock of the run).

`

// run does the work of authzgen; main only wires it to the process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("authzgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = io.WriteString(stderr, usage)
		fs.PrintDefaults()
	}
	var c config
	fs.StringVar(&c.url, "database-url", getenv("AUTHZ_DATABASE_URL"), "PostgreSQL URL (env AUTHZ_DATABASE_URL)")
	fs.IntVar(&c.tenants, "tenants", 1, "how many tenants")
	fs.StringVar(&c.size, "size", "small", "preset size: small, medium, large or limits")
	fs.StringVar(&c.prefix, "prefix", "gen", "tenant ids are <prefix>-0001, <prefix>-0002, ...")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the generator: the same seed gives the same tenants")
	fs.IntVar(&c.workers, "workers", runtime.NumCPU(), "tenants generated and stored at once; one per CPU by default")
	fs.StringVar(&c.keyFile, "audit-key-file", envOr(getenv("AUTHZ_AUDIT_KEY_FILE"), appconfig.DefaultAuditKeyFile()),
		"the servers' audit key file, which links the change log (env AUTHZ_AUDIT_KEY_FILE; created if missing)")
	fs.StringVar(&c.policiesDir, "policies-dir", "", "read templates and catalog from this directory (default: embedded, as authzd)")
	// Size overrides; their defaults are the preset's.
	users := fs.Int("users", 0, "users per tenant (default: the size's)")
	roles := fs.Int("roles", 0, "custom roles per tenant beyond the template roles (default: the size's)")
	depts := fs.Int("departments", 0, "departments per tenant (default: the size's)")
	grants := fs.Float64("grants-per-user", 0, "mean roles per user, 0-3 (default: the size's, 1.5)")
	rules := fs.Int("sharing-rules", 0, "sharing rules per tenant (default: the size's)")
	shares := fs.Int("shares", 0, "record shares per tenant (default: the size's)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the usage is printed; asking for it is no failure
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	opts, err := datagen.Preset(c.size)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "users":
			opts.Users = *users
		case "roles":
			opts.Roles = *roles
		case "departments":
			opts.Departments = *depts
		case "grants-per-user":
			opts.GrantsPerUser = *grants
		case "sharing-rules":
			opts.SharingRules = *rules
		case "shares":
			opts.Shares = *shares
		}
	})
	c.opts = opts
	if err := c.validate(); err != nil {
		return err
	}
	if c.url == "" {
		return errors.New("--database-url (or AUTHZ_DATABASE_URL) is required: tenants are generated into PostgreSQL " +
			"(the memory store lives only inside one authzd process)")
	}
	pool, err := postgres.Connect(ctx, c.url, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		return err
	}
	keys, _, err := chain.OpenKeyring(c.keyFile, time.Now())
	if err != nil {
		return err
	}
	st := postgres.New(pool, nil).WithKeys(keys)
	defer st.Close()
	return generate(ctx, st, c, stdout, stderr)
}

// validate checks the flags that need no database.
func (c config) validate() error {
	if c.tenants < 1 {
		return fmt.Errorf("--tenants must be at least 1, got %d", c.tenants)
	}
	if c.workers < 1 {
		return fmt.Errorf("--workers must be at least 1, got %d", c.workers)
	}
	if err := model.ValidateTenantID("--prefix", tenantID(c.prefix, c.tenants)); err != nil {
		return err
	}
	return c.opts.Validate()
}

func envOr(v, fallback string) string {
	if v != "" {
		return v
	}
	return fallback
}
