package store

import (
	"encoding/json"
	"fmt"

	"github.com/crmauthz/crmauthz/internal/model"
)

// A change-log entry carries, beside the change for people (Before,
// After), the rows its write left behind: every row the write set, with
// its new value, and every row it removed. A process that holds the
// tenant's state at the previous revision applies that to reach the
// entry's revision without reading the tenant again (ApplyRows), which is
// what lets replicas follow a large tenant's writes in milliseconds.

// Rows is the JSON form of the rows one write left behind.
type Rows struct {
	Name         string                                   `json:"name"`
	Settings     model.Settings                           `json:"settings"`
	Roles        []Row[string, model.Role]                `json:"roles,omitempty"`
	Grants       []Row[model.GrantKey, model.Grant]       `json:"grants,omitempty"`
	Users        []Row[string, model.User]                `json:"users,omitempty"`
	Departments  []Row[string, model.Department]          `json:"departments,omitempty"`
	Members      []Row[string, model.Membership]          `json:"members,omitempty"`
	SharingRules []Row[string, model.SharingRule]         `json:"sharing_rules,omitempty"`
	RecordShares []Row[model.ShareKey, model.RecordShare] `json:"record_shares,omitempty"`

	AccessRequests []Row[string, model.AccessRequest]           `json:"access_requests,omitempty"`
	AccessReviews  []Row[string, model.AccessReview]            `json:"access_reviews,omitempty"`
	ReviewItems    []Row[model.ReviewItemKey, model.ReviewItem] `json:"review_items,omitempty"`
}

// Row is one row a write set (Value) or removed (Value nil).
type Row[K comparable, V any] struct {
	Key   K  `json:"key"`
	Value *V `json:"value,omitempty"`
}

// EncodeRows returns the rows of st that d names, as JSON; nil when d
// replaced the whole state, which no list of rows describes.
func EncodeRows(st *model.TenantState, d model.Delta) ([]byte, error) {
	if d.Whole {
		return nil, nil
	}
	r := Rows{
		Name: st.Name, Settings: st.Settings,
		Roles: rowsOf(st.Roles, d.Roles), Grants: rowsOf(st.Grants, d.Grants), Users: rowsOf(st.Users, d.Users),
		Departments: rowsOf(st.Departments, d.Departments), Members: rowsOf(st.Members, d.Members),
		SharingRules: rowsOf(st.SharingRules, d.SharingRules), RecordShares: rowsOf(st.RecordShares, d.RecordShares),
		AccessRequests: rowsOf(st.AccessRequests, d.AccessRequests),
		AccessReviews:  rowsOf(st.AccessReviews, d.AccessReviews), ReviewItems: rowsOf(st.ReviewItems, d.ReviewItems),
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode the rows of a change: %w", err)
	}
	return b, nil
}

func rowsOf[K comparable, V any](m map[K]V, keys []K) []Row[K, V] {
	out := make([]Row[K, V], len(keys))
	for i, k := range keys {
		out[i].Key = k
		if v, ok := m[k]; ok {
			out[i].Value = &v
		}
	}
	return out
}

// ApplyRows sets and removes the rows of data, the Rows of a change-log
// entry, in st, and returns what changed. st must hold the state at the
// revision before the entry's; ApplyRows does not move its revision.
func ApplyRows(st *model.TenantState, data []byte) (model.Delta, error) {
	var r Rows
	if err := json.Unmarshal(data, &r); err != nil {
		return model.Delta{}, fmt.Errorf("decode the rows of a change: %w", err)
	}
	d := model.Delta{Settings: st.Name != r.Name || !st.Settings.Equal(r.Settings)}
	st.Name, st.Settings = r.Name, r.Settings
	d.Roles = applyRows(st.Roles, r.Roles)
	d.Grants = applyRows(st.Grants, r.Grants)
	d.Users = applyRows(st.Users, r.Users)
	d.Departments = applyRows(st.Departments, r.Departments)
	d.Members = applyRows(st.Members, r.Members)
	d.SharingRules = applyRows(st.SharingRules, r.SharingRules)
	d.RecordShares = applyRows(st.RecordShares, r.RecordShares)
	d.AccessRequests = applyRows(st.AccessRequests, r.AccessRequests)
	d.AccessReviews = applyRows(st.AccessReviews, r.AccessReviews)
	d.ReviewItems = applyRows(st.ReviewItems, r.ReviewItems)
	return d, nil
}

func applyRows[K comparable, V any](m map[K]V, rows []Row[K, V]) []K {
	keys := make([]K, len(rows))
	for i, row := range rows {
		keys[i] = row.Key
		if row.Value == nil {
			delete(m, row.Key)
		} else {
			m[row.Key] = *row.Value
		}
	}
	return keys
}

// EncodeState returns every row of st as Rows JSON: a snapshot of the
// whole state, from which the change log's rows replay its history.
func EncodeState(st *model.TenantState) ([]byte, error) {
	d := model.Delta{}
	d.Roles = keysOf(st.Roles)
	d.Grants = keysOf(st.Grants)
	d.Users = keysOf(st.Users)
	d.Departments = keysOf(st.Departments)
	d.Members = keysOf(st.Members)
	d.SharingRules = keysOf(st.SharingRules)
	d.RecordShares = keysOf(st.RecordShares)
	d.AccessRequests = keysOf(st.AccessRequests)
	d.AccessReviews = keysOf(st.AccessReviews)
	d.ReviewItems = keysOf(st.ReviewItems)
	return EncodeRows(st, d)
}

func keysOf[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// StateOf returns the state a snapshot (EncodeState) of tenant id at
// revision holds.
func StateOf(id string, revision int64, data []byte) (*model.TenantState, error) {
	st := model.NewTenantState(id, "")
	if _, err := ApplyRows(st, data); err != nil {
		return nil, err
	}
	st.Revision = revision
	return st, nil
}
