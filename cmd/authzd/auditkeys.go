package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/config"
)

const auditKeysUsage = `Usage: authzd audit-keys create|rotate|show [--file path]

  create   write a new key file: one HMAC key that links the audit logs and
           seals their heads, one Ed25519 key that signs checkpoints
  rotate   add a new key of each kind and make them the active ones; the old
           keys stay, so older entries and checkpoints keep verifying. Give
           every replica the new file, then restart them
  show     print the key ids and the checkpoint public keys (no secrets)

--file defaults to $AUTHZ_AUDIT_KEY_FILE, else %s.
The file holds secrets: mode 0600, one copy per replica (in Kubernetes, a
Secret), and a copy kept safe. Without it the logs cannot be verified.
`

// runAuditKeys manages the audit key file.
func runAuditKeys(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("authzd audit-keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { _, _ = fmt.Fprintf(stderr, auditKeysUsage, config.DefaultAuditKeyFile()) }
	def := getenv("AUTHZ_AUDIT_KEY_FILE")
	if def == "" {
		def = config.DefaultAuditKeyFile()
	}
	path := fs.String("file", def, "the audit key file")
	if len(args) == 0 {
		fs.Usage()
		return errors.New("audit-keys: name a subcommand: create, rotate or show")
	}
	sub := args[0]
	var b strings.Builder
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch sub {
	case "create":
		created, err := chain.CreateKeyFile(*path, time.Now())
		if err != nil {
			return err
		}
		if !created {
			return fmt.Errorf("audit-keys create: %s exists; rotate adds keys to it", *path)
		}
		fmt.Fprintf(&b, "created %s\n", *path)
	case "rotate":
		data, err := os.ReadFile(*path)
		if err != nil {
			return err
		}
		link, sign := chain.NewKeyIDs(time.Now())
		out, err := chain.RotateKeyFile(data, link, sign)
		if err != nil {
			return err
		}
		if err := chain.WriteKeyFile(*path, out); err != nil {
			return err
		}
		fmt.Fprintf(&b, "rotated %s: new entries link under %s, checkpoints are signed by %s\n", *path, link, sign)
	case "show":
	default:
		fs.Usage()
		return fmt.Errorf("audit-keys: unknown subcommand %q", sub)
	}
	keys, err := chain.LoadKeyring(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(&b, "link keys: %v (active %s)\n", keys.KeyIDs(), keys.Active().ID)
	for _, id := range keys.SignerIDs() {
		pub, _ := keys.PublicKey(id)
		active := ""
		if id == keys.Signer().ID {
			active = " (active)"
		}
		fmt.Fprintf(&b, "signing key %s%s: public key %s\n", id, active, hex.EncodeToString(pub))
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}
