// Command authzctl is the command-line client of crm-authz for tenant
// administrators and auditors: it asks the AuthorizationService for
// decisions and explanations and manages roles and grants through the
// AdminService.
//
// Auditors read the decision and change logs and verify their hash chains
// through the AuditService.
//
// Run `authzctl -h` for the commands and `authzctl <command> -h` for one
// command's flags and an example. Exit status: 0 success (and ALLOW for
// check), 1 an error (the server's status is printed to stderr), 2 a usage
// error, 3 a negative answer: DENY for check and explain, a broken chain for
// audit verify.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err))
}

// Exit codes. Scripts rely on them: a deny is not an error.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	exitDeny  = 3
)

const synopsis = `authzctl is the command-line client of crm-authz.

Usage: authzctl [global flags] <command> [arguments] [flags]

Decisions (AuthorizationService):
  check <user> <module> <verb> [--record id --owner u [--department d]]
  check <user> --function f
  check <user> --field module.field [--write]
                                   decide one permission: ALLOW (exit 0) or DENY (exit 3)
  explain <user> ...               check with the reasons (same arguments as check)
  fields <user> <module>           every field of a module with the user's state
  perms <user>                     the user's effective roles, modules, verbs and functions
  filter <user> <module> <verb>    the record filter: kind, SQL fragment and arguments

Administration (AdminService; writes need --actor and --reason):
  roles [list]                     the tenant's roles
  roles get <id>                   one role with its permissions
  roles templates                  the global role templates
  roles create <id> --template t   add a role from a template (or --permissions file.json)
  roles delete <id>                remove a role no grant, role, sharing rule or share names
  grant <user> <role> [--until t]  give a user a role, optionally until a time or for a duration
  revoke <user> <role>             take a role from a user
  grants --user u | --role r [--all]
                                   the grants of a user or of a role (--all: with expired ones)
  departments list                 the tenant's department tree
  memberships --user u | --department d
                                   where users sit: departments and manager
  rules list                       the tenant's sharing rules
  aliases [list]                   the tenant's action aliases (AuthZEN action names)
  aliases set <alias> <action>     name a module verb (<module>.<verb>) or function for callers
  aliases delete <alias>           remove an action alias
  export [-f FILE] [--format yaml|json]
                                   back up the tenant's settings as one document
  import FILE [--dry-run]          restore a document into the tenant (a diff table per kind)
  test FILE... [--policies dir]    test a tenant document's expected decisions offline, no server:
                                   exit 0 all pass, 3 a case failed
  casbin --model FILE --policy FILE
                                   the tenant's policy for the plain casbin library
  users [list] [--inactive]        the tenant's users, where they sit, whether active
  users get <user>                 one user
  users upsert <user> [--name n] [--department d] [--also d2] [--manager m]
                                   add a user, or change a user's name, departments, manager
  users deactivate|reactivate <user>
                                   offboard a user (every decision DENY, grants kept), or undo it

Governance (GovernanceService; writes need --actor and --reason):
  requests [list] [--view mine|decide|all]
                                   access requests: the actor's, those to decide, or all
  requests roles                   the roles users may request, and who approves them
  requests create <role> --for d   ask for a requestable role for a time, --reason the why
  requests approve|deny|cancel <id>
                                   decide a request (an approver) or withdraw it
  requests policy <role> --approver a --max-days n | --off
                                   make a role requestable (manager, function:<id>, role:<id>)
  whocan <module> <verb> | --function f | --field m.f
                                   the users a permission is allowed to, and why
  expiring [--within d] [--user u] grants and record shares that end soon
  reviews [list]                   access reviews with their progress
  reviews start --name n --default keep|revoke --deadline t [--roles r1,r2]
                                   review the tenant's grants: an item per grant for a reviewer
  reviews items <id> [--mine] [--csv]
                                   a review's items with the evidence of use; CSV for the record
  reviews keep|revoke <id> <user> <role>, reviews close <id>
                                   decide an item, or close the review (undecided: its default)

Audit (AuditService):
  audit decisions [filters]        the decision log: who was allowed or denied what, when
  audit decision <id>              one decision, by the id check prints
  audit explain <id>               why it was decided so, as the policy stood then
  audit changes [filters]          the change log: who changed which permission, and why
  audit verify decisions|changes   recompute the hash chains: intact (exit 0) or broken (exit 3);
                                   the change log on PostgreSQL only
  audit unused [--days n]          the access review: grants no decision used for n days
  audit security [--kind k]        refused authentications and calls, credential changes
  status                           the replica reached: authentication, the decision log, whether
                                   it follows the other replicas' writes and its lag

Platform (PlatformService; needs a platform credential):
  tenants [list] [--deleted]       the tenants with their sizes
  tenants get <id>                 one tenant
  tenants create <id> [--name n] [--templates t1,t2] [--admin user]
                                   onboard a customer: roles from templates, a first administrator
  tenants delete <id> --confirm <id>
                                   offboard a customer; its change log stays
  keys create --name n --scopes s [--tenants t] [--user u] [--expires t]
                                   a new API key, printed once on the last line
  keys list [--all]                the credentials, without secrets
  keys revoke <key id> --reason r  refuse a credential from now on

Global flags (before or after the command):
  --addr host:port     the authzd address (env AUTHZ_ADDR, default localhost:50051)
  --tenant id          the tenant (env AUTHZ_TENANT); every command but 'roles templates'
                       and 'audit verify decisions' needs one
  --actor user         the acting user, whose rights the server checks and records (env
                       AUTHZ_ACTOR); a key bound to a user acts as that user
  --reason text        why, recorded with every write; required for writes
  --timeout duration   deadline of the whole command (default 10s)
  --output text|json   text: a concise table or line; json: the response as protojson
  --api-key key        the API key to call with (env AUTHZ_API_KEY, preferred: flags show
                       in process lists); never sent without TLS beyond loopback
  --tls                connect with TLS, verifying the server with the system's CAs
  --tls-ca file        connect with TLS, verifying the server with these CAs (env AUTHZ_TLS_CA)
  --tls-cert file, --tls-key file
                       a client certificate for mutual TLS (env AUTHZ_TLS_CERT, AUTHZ_TLS_KEY)

Exit status: 0 success or ALLOW, 1 error, 2 usage error, 3 DENY or a broken audit chain.
Run 'authzctl <command> -h' for a command's flags and an example.
`

// run executes one authzctl command line: it writes the command's output to
// stdout and any error to stderr, and returns the error, whose kind decides
// the exit status (see exitCode).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{stdin: stdin}
	err := c.execute(ctx, args)
	if _, werr := io.WriteString(stdout, c.out.String()); werr != nil && (err == nil || errors.Is(err, errDenied)) {
		err = fmt.Errorf("write output: %w", werr)
	}
	var msg strings.Builder
	printError(&msg, err)
	_, _ = io.WriteString(stderr, msg.String()) // Nowhere is left to report a failure to.
	return err
}

// execute parses the global flags, then runs the command.
func (c *cli) execute(ctx context.Context, args []string) error {
	rest, err := c.init(args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usagef("", "no command given")
	}
	name, rest := rest[0], rest[1:]
	if name == "help" { // "authzctl help [command]" is "authzctl [command] -h".
		if len(rest) == 0 {
			c.out.WriteString(synopsis)
			return nil
		}
		name, rest = rest[0], []string{"-h"}
	}
	cmd, ok := commands[name]
	if !ok {
		return usagef("", "unknown command %q", name)
	}
	defer c.close()
	return cmd(ctx, c, rest)
}

// commands maps each top-level command to its implementation.
var commands = map[string]func(context.Context, *cli, []string) error{
	"check":       runCheck,
	"explain":     runExplain,
	"fields":      runFields,
	"perms":       runPerms,
	"filter":      runFilter,
	"roles":       runRoles,
	"grant":       runGrant,
	"revoke":      runRevoke,
	"grants":      runGrants,
	"departments": runDepartments,
	"memberships": runMemberships,
	"rules":       runRules,
	"aliases":     runAliases,
	"audit":       runAudit,
	"keys":        runKeys,
	"tenants":     runTenants,
	"users":       runUsers,
	"export":      runExport,
	"import":      runImport,
	"casbin":      runCasbin,
	"status":      runStatus,
	"requests":    runRequests,
	"whocan":      runWhoCan,
	"expiring":    runExpiring,
	"reviews":     runReviews,
	"test":        runTest,
}

// errDenied is returned when the answer printed is negative (check's DENY,
// audit verify's broken chain), so that authzctl exits with status 3.
var errDenied = errors.New("denied")

// usageError is a command line authzctl cannot run: a missing argument, an
// unknown flag or command, a malformed value.
type usageError struct {
	cmd string // the command whose help explains the usage; empty for the top level
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// exitCode is the exit status for the error run returned.
func exitCode(err error) int {
	var usage *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errDenied):
		return exitDeny
	case errors.As(err, &usage):
		return exitUsage
	}
	return exitError
}
