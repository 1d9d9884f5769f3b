package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/model"
)

// This file reads and writes a tenant's users (migration 0006) and its
// organisation and sharing: the departments, memberships, sharing rules
// and record shares tables (migration 0002). The manager depth lives in the tenants row.

// loadOrg reads the users, departments, memberships, sharing rules and
// record shares of the tenants l reads.
func loadOrg(ctx context.Context, l *tenantLoads) error {
	err := eachTenantRowSized(ctx, l, "users", "SELECT tenant_id, user_id, name, status FROM users WHERE tenant_id = ANY($1)",
		func(row pgx.CollectableRow) (string, model.User, error) {
			var u model.User
			var tenant, status string
			err := row.Scan(&tenant, &u.ID, &u.Name, &status)
			u.Status = model.UserStatus(status)
			return tenant, u, err
		}, func(t *tenantLoad, n int) { t.st.Users = make(map[string]model.User, n) }, func(t *tenantLoad, u model.User) {
			u.ID = t.in.of(u.ID)
			t.st.Users[u.ID] = u
		})
	if err != nil {
		return err
	}
	err = eachTenantRow(ctx, l, "departments", "SELECT tenant_id, department_id, name, parent_id FROM departments WHERE tenant_id = ANY($1)",
		func(row pgx.CollectableRow) (string, model.Department, error) {
			var d model.Department
			var tenant string
			var parent *string
			err := row.Scan(&tenant, &d.ID, &d.Name, &parent)
			if parent != nil {
				d.Parent = *parent
			}
			return tenant, d, err
		}, func(t *tenantLoad, d model.Department) {
			d.ID, d.Parent = t.in.of(d.ID), t.in.of(d.Parent)
			t.st.Departments[d.ID] = d
		})
	if err != nil {
		return err
	}
	err = eachTenantRowSized(ctx, l, "memberships", `SELECT tenant_id, user_id, primary_department_id, other_department_ids, manager_id
		FROM memberships WHERE tenant_id = ANY($1)`,
		func(row pgx.CollectableRow) (string, model.Membership, error) {
			var m model.Membership
			var tenant string
			err := row.Scan(&tenant, &m.UserID, &m.Primary, &m.Others, &m.Manager)
			if len(m.Others) == 0 {
				m.Others = nil
			}
			return tenant, m, err
		}, func(t *tenantLoad, n int) { t.st.Members = make(map[string]model.Membership, n) }, func(t *tenantLoad, m model.Membership) {
			m.UserID, m.Primary, m.Manager = t.in.of(m.UserID), t.in.of(m.Primary), t.in.of(m.Manager)
			for i, d := range m.Others {
				m.Others[i] = t.in.of(d)
			}
			t.st.Members[m.UserID] = m
		})
	if err != nil {
		return err
	}
	err = eachTenantRow(ctx, l, "sharing rules", `SELECT tenant_id, rule_id, module, owner_kind, owner_id, owner_subs, shared_kind, shared_id, shared_subs, access
		FROM sharing_rules WHERE tenant_id = ANY($1)`,
		func(row pgx.CollectableRow) (string, model.SharingRule, error) {
			var r model.SharingRule
			var tenant, ownerKind, sharedKind, access string
			err := row.Scan(&tenant, &r.ID, &r.Module, &ownerKind, &r.OwnedBy.ID, &r.OwnedBy.IncludeSubs,
				&sharedKind, &r.SharedWith.ID, &r.SharedWith.IncludeSubs, &access)
			r.OwnedBy.Kind, r.SharedWith.Kind, r.Access = model.PrincipalKind(ownerKind), model.PrincipalKind(sharedKind), model.Access(access)
			return tenant, r, err
		}, func(t *tenantLoad, r model.SharingRule) { t.st.SharingRules[r.ID] = r })
	if err != nil {
		return err
	}
	return eachTenantRow(ctx, l, "record shares", `SELECT tenant_id, module, record_id, principal_kind, principal_id, principal_subs, access,
			expires_at, shared_by, shared_at
		FROM record_shares WHERE tenant_id = ANY($1)`,
		func(row pgx.CollectableRow) (string, model.RecordShare, error) {
			var sh model.RecordShare
			var tenant, kind, access string
			var expiresAt, sharedAt *time.Time
			err := row.Scan(&tenant, &sh.Module, &sh.RecordID, &kind, &sh.Principal.ID, &sh.Principal.IncludeSubs, &access,
				&expiresAt, &sh.SharedBy, &sharedAt)
			sh.Principal.Kind, sh.Access = model.PrincipalKind(kind), model.Access(access)
			if expiresAt != nil {
				sh.ExpiresAt = expiresAt.UTC()
			}
			if sharedAt != nil {
				sh.SharedAt = sharedAt.UTC()
			}
			return tenant, sh, err
		}, func(t *tenantLoad, sh model.RecordShare) {
			sh.Principal.ID, sh.SharedBy = t.in.of(sh.Principal.ID), t.in.of(sh.SharedBy)
			t.st.RecordShares[sh.Key()] = sh
		})
}

// queueOrgDeletes queues the deletion of the memberships, sharing rules and
// record shares of cur that next no longer holds. They go first, so that
// departments they named can go later in the same write.
func queueOrgDeletes(b *pgx.Batch, cur, next *model.TenantState) {
	tenant := next.ID
	for _, u := range gone(cur.Users, next.Users, strings.Compare) {
		b.Queue("DELETE FROM users WHERE tenant_id = $1 AND user_id = $2", tenant, u.ID)
	}
	for _, m := range gone(cur.Members, next.Members, strings.Compare) {
		b.Queue("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2", tenant, m.UserID)
	}
	for _, r := range gone(cur.SharingRules, next.SharingRules, strings.Compare) {
		b.Queue("DELETE FROM sharing_rules WHERE tenant_id = $1 AND rule_id = $2", tenant, r.ID)
	}
	for _, sh := range gone(cur.RecordShares, next.RecordShares, model.CompareShareKeys) {
		p := sh.Principal
		b.Queue(`DELETE FROM record_shares WHERE tenant_id = $1 AND module = $2 AND record_id = $3
			AND principal_kind = $4 AND principal_id = $5 AND principal_subs = $6`,
			tenant, sh.Module, sh.RecordID, string(p.Kind), p.ID, p.IncludeSubs)
	}
}

// queueOrgUpserts queues the departments, memberships, sharing rules and
// record shares of next that are new or changed since cur, departments
// first (memberships reference them), and then the deletion of the
// departments next no longer holds.
func queueOrgUpserts(b *pgx.Batch, cur, next *model.TenantState) {
	tenant := next.ID
	for _, u := range changed(next.Users, cur.Users, equal, strings.Compare) {
		b.Queue(`INSERT INTO users (tenant_id, user_id, name, status) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, user_id) DO UPDATE SET name = excluded.name, status = excluded.status`,
			tenant, u.ID, u.Name, string(u.Status))
	}
	for _, d := range changed(next.Departments, cur.Departments, equal, strings.Compare) {
		b.Queue(`INSERT INTO departments (tenant_id, department_id, name, parent_id) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, department_id) DO UPDATE SET name = excluded.name, parent_id = excluded.parent_id`,
			tenant, d.ID, d.Name, nullString(d.Parent))
	}
	for _, m := range changed(next.Members, cur.Members, sameMembership, strings.Compare) {
		others := m.Others
		if others == nil {
			others = []string{}
		}
		b.Queue(`INSERT INTO memberships (tenant_id, user_id, primary_department_id, other_department_ids, manager_id)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id, user_id) DO UPDATE SET primary_department_id = excluded.primary_department_id,
				other_department_ids = excluded.other_department_ids, manager_id = excluded.manager_id`,
			tenant, m.UserID, m.Primary, others, m.Manager)
	}
	for _, r := range changed(next.SharingRules, cur.SharingRules, equal, strings.Compare) {
		b.Queue(`INSERT INTO sharing_rules (tenant_id, rule_id, module, owner_kind, owner_id, owner_subs,
				shared_kind, shared_id, shared_subs, access)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (tenant_id, rule_id) DO UPDATE SET module = excluded.module,
				owner_kind = excluded.owner_kind, owner_id = excluded.owner_id, owner_subs = excluded.owner_subs,
				shared_kind = excluded.shared_kind, shared_id = excluded.shared_id, shared_subs = excluded.shared_subs,
				access = excluded.access`,
			tenant, r.ID, r.Module, string(r.OwnedBy.Kind), r.OwnedBy.ID, r.OwnedBy.IncludeSubs,
			string(r.SharedWith.Kind), r.SharedWith.ID, r.SharedWith.IncludeSubs, string(r.Access))
	}
	for _, sh := range changed(next.RecordShares, cur.RecordShares, sameShare, model.CompareShareKeys) {
		p := sh.Principal
		b.Queue(`INSERT INTO record_shares (tenant_id, module, record_id, principal_kind, principal_id, principal_subs,
				access, expires_at, shared_by, shared_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (tenant_id, module, record_id, principal_kind, principal_id, principal_subs)
			DO UPDATE SET access = excluded.access, expires_at = excluded.expires_at,
				shared_by = excluded.shared_by, shared_at = excluded.shared_at`,
			tenant, sh.Module, sh.RecordID, string(p.Kind), p.ID, p.IncludeSubs,
			string(sh.Access), nullTime(sh.ExpiresAt), sh.SharedBy, nullTime(sh.SharedAt))
	}
	for _, d := range gone(cur.Departments, next.Departments, strings.Compare) {
		b.Queue("DELETE FROM departments WHERE tenant_id = $1 AND department_id = $2", tenant, d.ID)
	}
}

// normalizeOrg rounds the record share times of st down to what the
// database keeps.
func normalizeOrg(st *model.TenantState) {
	for k, sh := range st.RecordShares {
		sh.ExpiresAt, sh.SharedAt = dbTime(sh.ExpiresAt), dbTime(sh.SharedAt)
		st.RecordShares[k] = sh
	}
}

// checkOrgKeys verifies that every department, membership, sharing rule
// and record share is filed under its own key.
func checkOrgKeys(st *model.TenantState) error {
	for id, u := range st.Users {
		if id != u.ID {
			return fmt.Errorf("tenant %q: user %q is filed under %q", st.ID, u.ID, id)
		}
	}
	for id, d := range st.Departments {
		if id != d.ID {
			return fmt.Errorf("tenant %q: department %q is filed under %q", st.ID, d.ID, id)
		}
	}
	for id, m := range st.Members {
		if id != m.UserID {
			return fmt.Errorf("tenant %q: membership of %q is filed under %q", st.ID, m.UserID, id)
		}
	}
	for id, r := range st.SharingRules {
		if id != r.ID {
			return fmt.Errorf("tenant %q: sharing rule %q is filed under %q", st.ID, r.ID, id)
		}
	}
	for k, sh := range st.RecordShares {
		if k != sh.Key() {
			return fmt.Errorf("tenant %q: share of %s/%s with %s is filed under %s/%s with %s",
				st.ID, sh.Module, sh.RecordID, sh.Principal, k.Module, k.RecordID, k.Principal)
		}
	}
	return nil
}

func sameMembership(a, b model.Membership) bool {
	return a.UserID == b.UserID && a.Primary == b.Primary && a.Manager == b.Manager && slices.Equal(a.Others, b.Others)
}

func sameShare(a, b model.RecordShare) bool {
	return a.Key() == b.Key() && a.Access == b.Access && a.SharedBy == b.SharedBy &&
		a.ExpiresAt.Equal(b.ExpiresAt) && a.SharedAt.Equal(b.SharedAt)
}

// nullString turns the empty string into SQL NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
