// Command authzd is the crm-authz server.
//
//	authzd -h | help         list the subcommands
//	authzd [serve] [flags]   serve gRPC (the default subcommand)
//	authzd migrate [flags]   apply the PostgreSQL schema migrations
//	authzd keys create|list|revoke [flags]
//	                         manage the credentials callers authenticate
//	                         with, straight in PostgreSQL (the first key)
//	authzd audit-keys create|rotate|show [--file path]
//	                         manage the keys that link the audit logs and
//	                         sign checkpoints
//
// With no flags it serves from memory on :50051, seeded from the embedded
// policy bundle. Run `authzd serve -h` for the flags; each has an AUTHZ_*
// environment variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/crmauthz/crmauthz/internal/app"
	"github.com/crmauthz/crmauthz/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts the graceful stop; stop then restores the
	// default handling, so a second signal ends the process at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "authzd:", err)
		os.Exit(1)
	}
}

const usage = `Usage: authzd [command] [flags]

Commands:
  serve       serve the gRPC API (the default: authzd alone serves the demo from
              memory on 127.0.0.1:50051)
  migrate     apply the PostgreSQL schema migrations, saying which it applied
  keys        create, list and revoke the credentials callers authenticate with,
              straight in PostgreSQL (the first key)
  audit-keys  create, rotate and show the keys that link the audit logs and sign
              checkpoints
  help        this text; 'authzd help <command>' is 'authzd <command> -h'

Run 'authzd <command> -h' for a command's flags; every flag of serve and migrate also
comes from an AUTHZ_* environment variable and a YAML file (--config).
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			if args[0] == "help" && len(args) > 1 {
				return run(ctx, []string{args[1], "-h"}, getenv, stdout, stderr)
			}
			_, err := io.WriteString(stdout, usage)
			return err
		case "serve", "migrate":
			cmd, args = args[0], args[1:]
		case "keys":
			return runKeys(ctx, args[1:], getenv, stdout, stderr)
		case "audit-keys":
			return runAuditKeys(args[1:], getenv, stdout, stderr)
		}
	}
	cfg, err := config.Load("authzd "+cmd, args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the usage is printed; asking for it is no failure
	}
	if err != nil {
		return err
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log.Info("starting", zap.String("command", cmd), zap.Any("config", cfg.Redacted()))

	switch cmd {
	case "migrate":
		return app.Migrate(ctx, cfg, log)
	default:
		a, err := app.New(ctx, cfg, log)
		if err != nil {
			if ctx.Err() != nil { // a stop asked for during start-up
				log.Info("stopped during start-up", zap.NamedError("cause", err))
				return nil
			}
			return err
		}
		defer a.Close() // Run closes it too; this covers not getting there
		lis, err := net.Listen("tcp", cfg.Listen())
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		return a.Run(ctx, lis)
	}
}

func newLogger(cfg config.Config) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	zc := zap.NewProductionConfig()
	if cfg.LogFormat == "console" {
		zc = zap.NewDevelopmentConfig()
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.DisableStacktrace = true
	return zc.Build()
}
