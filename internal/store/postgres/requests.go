package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/pgerr"
)

// loadRequests reads the access requests of the tenants being loaded.
func loadRequests(ctx context.Context, l *tenantLoads) error {
	return eachTenantRow(ctx, l, "access requests", `SELECT tenant_id, body FROM access_requests WHERE tenant_id = ANY($1)`,
		func(row pgx.CollectableRow) (string, model.AccessRequest, error) {
			var tenant string
			var r model.AccessRequest
			err := scanBody(row, &tenant, &r)
			return tenant, r, err
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

// loadReviews reads the access reviews and their items of the tenants
// being loaded.
func loadReviews(ctx context.Context, l *tenantLoads) error {
	err := eachTenantRow(ctx, l, "access reviews", `SELECT tenant_id, body FROM access_reviews WHERE tenant_id = ANY($1)`,
		func(row pgx.CollectableRow) (string, model.AccessReview, error) {
			var tenant string
			var r model.AccessReview
			err := scanBody(row, &tenant, &r)
			return tenant, r, err
		}, func(t *tenantLoad, r model.AccessReview) { t.st.AccessReviews[r.ID] = r })
	if err != nil {
		return err
	}
	return eachTenantRow(ctx, l, "review items", `SELECT tenant_id, body FROM review_items WHERE tenant_id = ANY($1)`,
		func(row pgx.CollectableRow) (string, model.ReviewItem, error) {
			var tenant string
			var it model.ReviewItem
			err := scanBody(row, &tenant, &it)
			return tenant, it, err
		}, func(t *tenantLoad, it model.ReviewItem) {
			it.UserID, it.RoleID, it.Reviewer = t.in.of(it.UserID), t.in.of(it.RoleID), t.in.of(it.Reviewer)
			t.st.ReviewItems[it.Key()] = it
		})
}

// scanBody scans a row of a tenant id and a JSON body into v.
func scanBody(row pgx.CollectableRow, tenant *string, v any) error {
	var body []byte
	if err := row.Scan(tenant, &body); err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode a row of tenant %q: %w", *tenant, err)
	}
	return nil
}

// queueReviewDeletes queues the deletion of the review items and reviews
// of cur that next no longer holds, items first.
func queueReviewDeletes(b *pgx.Batch, cur, next *model.TenantState) {
	tenant := next.ID
	for _, it := range gone(cur.ReviewItems, next.ReviewItems, model.CompareReviewItemKeys) {
		b.Queue("DELETE FROM review_items WHERE tenant_id = $1 AND review_id = $2 AND user_id = $3 AND role_id = $4",
			tenant, it.Review, it.UserID, it.RoleID)
	}
	for _, r := range gone(cur.AccessReviews, next.AccessReviews, strings.Compare) {
		b.Queue("DELETE FROM access_reviews WHERE tenant_id = $1 AND review_id = $2", tenant, r.ID)
	}
}

// queueReviewUpserts queues the reviews, then the items, of next that are
// new or changed since cur.
func queueReviewUpserts(b *pgx.Batch, cur, next *model.TenantState) error {
	tenant := next.ID
	for _, r := range changed(next.AccessReviews, cur.AccessReviews, sameReview, strings.Compare) {
		body, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode access review %q: %w", r.ID, err)
		}
		b.Queue(`INSERT INTO access_reviews (tenant_id, review_id, state, deadline, body) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id, review_id) DO UPDATE SET state = excluded.state, deadline = excluded.deadline, body = excluded.body`,
			tenant, r.ID, string(r.State), r.Deadline, string(body))
	}
	for _, it := range changed(next.ReviewItems, cur.ReviewItems, equal, model.CompareReviewItemKeys) {
		body, err := json.Marshal(it)
		if err != nil {
			return fmt.Errorf("encode an item of access review %q: %w", it.Review, err)
		}
		b.Queue(`INSERT INTO review_items (tenant_id, review_id, user_id, role_id, body) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id, review_id, user_id, role_id) DO UPDATE SET body = excluded.body`,
			tenant, it.Review, it.UserID, it.RoleID, string(body))
	}
	return nil
}

func sameReview(a, b model.AccessReview) bool { return reflect.DeepEqual(a, b) }

// DueReviews implements store.Store.
func (s *Store) DueReviews(ctx context.Context, now time.Time, limit int) ([]store.ReviewRef, error) {
	// Deleting a tenant deletes its reviews: the reviews table alone
	// answers, without waiting on the tenants' rows writers lock.
	rows, _ := s.pool.Query(ctx, `SELECT tenant_id, review_id FROM access_reviews
		WHERE state = 'open' AND deadline <= $1 ORDER BY deadline LIMIT $2`, now, limit)
	refs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ReviewRef, error) {
		var r store.ReviewRef
		err := row.Scan(&r.Tenant, &r.Review)
		return r, err
	})
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("read the access reviews due: %w", err))
	}
	return refs, nil
}
