package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const keysHelp = `Usage: authzctl keys create --name n --scopes s1,s2 [--tenants t1,t2] [--user u]
                            [--expires t] [--certificate-identity id]
       authzctl keys list [--all] [--tenant t]
       authzctl keys revoke <key id> --reason text

Manages the credentials callers authenticate with (PlatformService); needs a
credential with the platform scope. create prints the new key's details,
then the key itself alone on the last line (shown once: only its hash is
stored); with --certificate-identity it registers a client certificate
identity (URI SAN or common name) instead and prints no key.

Example:
  authzctl keys create --name orders-service --scopes check --tenants demo --expires 2160h
`

// runKeys dispatches the keys subcommands.
func runKeys(ctx context.Context, c *cli, args []string) error {
	sub, args, err := c.subcommand(args, "list", keysHelp)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		return keysCreate(ctx, c, args)
	case "list":
		return keysList(ctx, c, args)
	case "revoke":
		return keysRevoke(ctx, c, args)
	}
	return usagef("keys", "keys: unknown subcommand %q", sub)
}

func keysCreate(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("keys create", keysHelp)
	req := &pb.CreateKeyRequest{}
	var scopes, tenants, expires string
	cmd.fs.StringVar(&req.Name, "name", "", "the credential's `name`")
	cmd.fs.StringVar(&scopes, "scopes", "", "comma-separated `scopes`: check, admin, audit, platform")
	cmd.fs.StringVar(&tenants, "tenants", "", "comma-separated `tenants` it may act in (required unless --scopes has platform)")
	cmd.fs.StringVar(&req.UserId, "user", "", "bind it to this `user` of its one tenant")
	cmd.fs.StringVar(&expires, "expires", "", "when it stops working: RFC 3339, a date, or a duration from now (720h)")
	cmd.fs.StringVar(&req.CertificateIdentity, "certificate-identity", "", "register this client certificate `identity` instead of creating a key")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if req.Name == "" || scopes == "" {
		return usagef(cmd.name, "keys create: --name and --scopes are required")
	}
	req.Scopes, req.TenantIds = splitList(scopes), splitList(tenants)
	if expires != "" {
		t, err := parseTime("expires", expires, time.Now(), true)
		if err != nil {
			return usagef(cmd.name, "%v", err)
		}
		req.ExpiresAt = timestamppb.New(t)
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.platform.CreateKey(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	printKey(c, resp.GetKey())
	if resp.GetSecret() != "" {
		fmt.Fprintf(&c.out, "# the key, shown once (only its hash is stored):\n%s\n", resp.GetSecret())
	}
	return nil
}

func keysList(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("keys list", keysHelp)
	req := &pb.ListKeysRequest{PageSize: 1000}
	cmd.fs.BoolVar(&req.IncludeRevoked, "all", false, "list revoked credentials too")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	req.TenantId = c.tenant
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	out := &pb.ListKeysResponse{}
	for {
		resp, err := c.platform.ListKeys(ctx, req)
		if err != nil {
			return err
		}
		out.Keys = append(out.Keys, resp.GetKeys()...)
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := newTable(&c.out, "KEY ID", "NAME", "SCOPES", "TENANTS", "USER", "EXPIRES", "ACTIVE")
	for _, k := range out.GetKeys() {
		t.row(k.GetKeyId(), k.GetName(), strings.Join(k.GetScopes(), ","), tenantsText(k.GetTenantIds()), k.GetUserId(),
			timeText(k.GetExpiresAt()), fmt.Sprint(k.GetActive()))
	}
	t.flush()
	return nil
}

func keysRevoke(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("keys revoke", keysHelp)
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if strings.TrimSpace(c.reason) == "" {
		return usagef(cmd.name, "keys revoke: --reason is required")
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.platform.RevokeKey(ctx, &pb.RevokeKeyRequest{KeyId: pos[0], Reason: c.reason})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	printKey(c, resp.GetKey())
	return nil
}

func printKey(c *cli, k *pb.Key) {
	fmt.Fprintf(&c.out, "key id:    %s\nname:      %s\nscopes:    %s\ntenants:   %s\n", k.GetKeyId(), k.GetName(),
		strings.Join(k.GetScopes(), ","), tenantsText(k.GetTenantIds()))
	if k.GetUserId() != "" {
		fmt.Fprintf(&c.out, "user:      %s\n", k.GetUserId())
	}
	if k.GetCertificateIdentity() != "" {
		fmt.Fprintf(&c.out, "identity:  %s\n", k.GetCertificateIdentity())
	}
	fmt.Fprintf(&c.out, "expires:   %s\nactive:    %v\n", orDash(timeText(k.GetExpiresAt())), k.GetActive())
	if k.GetRevokeTime() != nil {
		fmt.Fprintf(&c.out, "revoked:   %s by %s\n", timeText(k.GetRevokeTime()), k.GetRevokedBy())
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
