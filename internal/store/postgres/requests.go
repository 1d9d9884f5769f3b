package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/model"
)

// loadRequests reads the access requests of the tenants being loaded.
func loadRequests(ctx context.Context, l *tenantLoads) error {
	return eachTenantRow(ctx, l, "access requests", `SELECT tenant_id, body FROM access_requests WHERE tenant_id = ANY($1)`,
		func(row pgx.CollectableRow) (string, model.AccessRequest, error) {
			var tenant string
			var body []byte
			var r model.AccessRequest
			if err := row.Scan(&tenant, &body); err != nil {
				return "", r, err
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return "", r, fmt.Errorf("decode access request of tenant %q: %w", tenant, err)
			}
			return tenant, r, nil
		}, func(t *tenantLoad, r model.AccessRequest) { t.st.AccessRequests[r.ID] = r })
}

// queueRequests queues the writes that turn the access requests of cur
// into those of next. Requests reference nothing, so their order among
// the other rows does not matter.
func queueRequests(b *pgx.Batch, cur, next *model.TenantState) error {
	tenant := next.ID
	for _, r := range gone(cur.AccessRequests, next.AccessRequests, strings.Compare) {
		b.Queue("DELETE FROM access_requests WHERE tenant_id = $1 AND request_id = $2", tenant, r.ID)
	}
	for _, r := range changed(next.AccessRequests, cur.AccessRequests, equal, strings.Compare) {
		body, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode access request %q: %w", r.ID, err)
		}
		b.Queue(`INSERT INTO access_requests (tenant_id, request_id, body) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id, request_id) DO UPDATE SET body = excluded.body`, tenant, r.ID, string(body))
	}
	return nil
}
