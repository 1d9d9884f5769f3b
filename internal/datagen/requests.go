package datagen

import (
	"math/rand/v2"

	"github.com/crmauthz/crmauthz/internal/model"
)

// Request is one check against a tenant: may User use Permission? A
// record check carries its record in Permission.Record.
type Request struct {
	User       string
	Permission model.Permission
}

// unknownUser is a user id no generated tenant knows.
const unknownUser = "stranger"

// Requests returns n checks against st, deterministic for the seed, each
// valid for the catalog (model.Permission.Validate): about a third module
// verbs, a quarter record checks, a quarter field reads and writes and the
// rest functions, over every module, verb, field and function of the
// catalog. Subjects are the tenant's users, inactive ones included, and
// now and then one the tenant does not know. A record's owner is the
// subject itself, someone in the subject's primary department or anyone;
// its department is mostly its owner's primary one, sometimes another or
// none; its id is now and then one the tenant has shared.
func Requests(st *model.TenantState, cat *model.Catalog, n int, seed uint64) []Request {
	r := rand.New(rand.NewPCG(seed, seedStream+2)) //nolint:gosec // test data, not secrets
	users := make([]string, 0, len(st.Users))
	for _, u := range st.SortedUsers() {
		users = append(users, u.ID)
	}
	byDept := map[string][]string{}
	for _, id := range users {
		if m, ok := st.Members[id]; ok {
			byDept[m.Primary] = append(byDept[m.Primary], id)
		}
	}
	var depts []string
	for _, d := range st.SortedDepartments() {
		depts = append(depts, d.ID)
	}
	var shared []model.ShareKey
	for _, sh := range st.SortedRecordShares() {
		shared = append(shared, sh.Key())
	}
	user := func() string {
		if len(users) == 0 || r.IntN(50) == 0 {
			return unknownUser
		}
		return pick(r, users)
	}
	out := make([]Request, n)
	for i := range out {
		q := Request{User: user()}
		mod := pick(r, cat.Modules)
		switch x := r.IntN(100); {
		case x < 35:
			q.Permission = model.ModulePerm(mod.ID, pick(r, cat.Verbs))
		case x < 60:
			module := mod.ID
			rec := record(r, st, module, q.User, users, depts, byDept)
			if len(shared) > 0 && r.IntN(4) == 0 { // a record the tenant has shared
				k := pick(r, shared)
				module, rec.ID = k.Module, k.RecordID
			}
			q.Permission = model.ModulePerm(module, pick(r, cat.Verbs))
			q.Permission.Record = rec
		case x < 85 && len(mod.Fields) > 0:
			q.Permission = model.FieldPerm(mod.ID, pick(r, mod.Fields), r.IntN(2) == 0)
		default:
			q.Permission = model.FunctionPerm(pick(r, cat.Functions).ID)
		}
		out[i] = q
	}
	return out
}

// record draws a record of module for a check by subject.
func record(r *rand.Rand, st *model.TenantState, module, subject string, users, depts []string, byDept map[string][]string) *model.Record {
	rec := &model.Record{ID: RecordID(module, 1+r.IntN(1000)), Owner: unknownUser}
	switch x := r.IntN(10); {
	case x < 2:
		rec.Owner = subject
	case x < 5:
		if m, ok := st.Members[subject]; ok {
			rec.Owner = pick(r, byDept[m.Primary])
			break
		}
		fallthrough
	default:
		if len(users) > 0 {
			rec.Owner = pick(r, users)
		}
	}
	switch x := r.IntN(10); {
	case x < 7:
		if m, ok := st.Members[rec.Owner]; ok {
			rec.Department = m.Primary
		}
	case x < 9:
		if len(depts) > 0 {
			rec.Department = pick(r, depts)
		}
	}
	return rec
}
