package store_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
)

// TestRowsCarryAccessRequests: a replica applying the rows of writes that
// approved a request and revoked its grant in a review reaches the
// writer's state: the request, its policy's role, the grant, the review
// and its items.
func TestRowsCarryAccessRequests(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	st := model.NewTenantState("acme", "Acme")
	for _, u := range []string{"ann", "ben"} {
		if _, err := st.UpsertUser(model.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateRole(model.Role{ID: "exporter", Permissions: model.Permissions{Functions: []string{"data.export"}}}); err != nil {
		t.Fatal(err)
	}
	replica := st.Clone()
	writes := []store.Mutation{
		func(st *model.TenantState) (model.Change, error) {
			return st.SetRequestPolicy("exporter", &model.RequestPolicy{Approvers: []model.Approver{{Kind: model.ApproverManager}}, MaxDays: 3, PendingDays: 1})
		},
		func(st *model.TenantState) (model.Change, error) {
			return st.RequestAccess(model.AccessRequest{ID: "req_0000000000000001", UserID: "ann", RoleID: "exporter", Duration: time.Hour, RequestedBy: "ann"}, now)
		},
		func(st *model.TenantState) (model.Change, error) {
			return st.ApproveRequest("req_0000000000000001", "ben", "ok", now.Add(time.Hour), now)
		},
		func(st *model.TenantState) (model.Change, error) {
			return st.StartReview(model.AccessReview{ID: "rvw_0000000000000001", Default: model.ReviewKeep, Deadline: now.Add(time.Hour), CreatedBy: "ben"}, nil, now)
		},
		func(st *model.TenantState) (model.Change, error) {
			return st.DecideReviewItem(model.ReviewItemKey{Review: "rvw_0000000000000001", UserID: "ann", RoleID: "exporter"}, model.ReviewRevoke, "ben", "", now)
		},
	}
	for i, w := range writes {
		err := store.Journaled(st, w, func(_ model.Change, d model.Delta, _ *model.TenantState) error {
			rows, err := store.EncodeRows(st, d)
			if err != nil {
				return err
			}
			got, err := store.ApplyRows(replica, rows)
			if err != nil {
				return err
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", d) {
				t.Errorf("write %d: the replica's delta %+v, the writer's %+v", i, got, d)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if !reflect.DeepEqual(replica.AccessRequests, st.AccessRequests) || !reflect.DeepEqual(replica.Grants, st.Grants) ||
			!reflect.DeepEqual(replica.Roles, st.Roles) || !reflect.DeepEqual(replica.AccessReviews, st.AccessReviews) ||
			!reflect.DeepEqual(replica.ReviewItems, st.ReviewItems) {
			t.Fatalf("write %d: the replica's state differs from the writer's", i)
		}
	}
}
