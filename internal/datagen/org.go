package datagen

import (
	"fmt"
	"slices"

	"github.com/crmauthz/crmauthz/internal/model"
)

var (
	divisions = []string{"Sales", "Customer Service", "Marketing", "Finance", "Operations", "Partner Channel",
		"Product", "Legal", "Procurement", "Human Resources"}
	regions = []string{"North", "South", "East", "West", "Central", "Northeast", "Northwest", "Southeast",
		"Southwest", "Overseas", "Key Accounts", "SMB"}
	givenNames = []string{"Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Alice", "Bob", "Carol", "Dave", "Erin", "Frank",
		"Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar", "Peggy", "Trent", "Victor", "Walter", "Sofia", "Ravi"}
	surnames = []string{"Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun",
		"Ma", "Zhu", "Hu", "Guo", "Lin", "Smith", "Garcia", "Müller", "Kumar", "Sato", "Kim", "Novak"}
)

// departments makes the tree breadth first: a headquarters at the top
// with 4-8 divisions, regions below those and teams further down, every
// department below the top taking 2-6 children until there are enough. A
// tree of 100 departments is four levels deep, one of 2,000 six.
func (g *gen) departments() error {
	n := g.opts.Departments
	names := make([]string, 0, n)
	g.deptIDs, g.deptParent, g.deptLevel = make([]string, 0, n), make([]int, 0, n), make([]int, 0, n)
	add := func(parent int, name string) error {
		d := model.Department{ID: fmt.Sprintf("dept_%04d", len(g.deptIDs)+1), Name: name}
		level := 0
		if parent >= 0 {
			d.Parent, level = g.deptIDs[parent], g.deptLevel[parent]+1
		}
		if _, err := g.st.CreateDepartment(d); err != nil {
			return fmt.Errorf("department %q: %w", d.ID, err)
		}
		g.deptIDs, g.deptParent, g.deptLevel = append(g.deptIDs, d.ID), append(g.deptParent, parent), append(g.deptLevel, level)
		names = append(names, name)
		return nil
	}
	if n > 0 {
		if err := add(-1, "Headquarters"); err != nil {
			return err
		}
	}
	for parent := 0; len(g.deptIDs) < n; parent++ {
		level := g.deptLevel[parent] + 1
		kids := 2 + g.r.IntN(5)
		if level == 1 {
			kids = 4 + g.r.IntN(5)
		}
		for k := range kids {
			if len(g.deptIDs) == n {
				break
			}
			var name string
			switch level {
			case 1:
				name = divisions[k%len(divisions)]
			case 2:
				name = names[parent] + " " + regions[k%len(regions)]
			default:
				name = fmt.Sprintf("%s Team %d", names[parent], k+1)
			}
			if len(name) > 200 { // deep trees: keep names within the limit
				name = fmt.Sprintf("Team %d of %s", k+1, g.deptIDs[parent])
			}
			if err := add(parent, name); err != nil {
				return err
			}
		}
	}
	// Most people work in the teams at the leaves.
	isParent := make([]bool, n)
	for _, p := range g.deptParent {
		if p >= 0 {
			isParent[p] = true
		}
	}
	g.deptPick = make([]float64, n)
	total := 0.0
	for i := range n {
		w := 1.0
		if !isParent[i] {
			w = 5
		}
		total += w
		g.deptPick[i] = total
	}
	return nil
}

// users makes the users with their memberships, the manager depth, and
// then offboards some. The first users head the departments, in the order
// made, each reporting to the head of the department above, so manager
// chains follow the tree; the others land mostly in teams and report to
// their department's head or, now and then, to a colleague who joined
// before them. A manager always joined before the user, so chains never
// close a cycle.
func (g *gen) users() error {
	n := g.opts.Users
	g.userIDs = make([]string, 0, n)
	head := make([]int, len(g.deptIDs)) // user index heading each department, or -1
	for i := range head {
		head[i] = -1
	}
	members := make([][]int, len(g.deptIDs))
	for i := range n {
		u := model.User{
			ID:   fmt.Sprintf("u%06d", i+1),
			Name: pick(g.r, givenNames) + " " + pick(g.r, surnames),
		}
		if _, err := g.st.UpsertUser(u); err != nil {
			return fmt.Errorf("user %q: %w", u.ID, err)
		}
		g.userIDs = append(g.userIDs, u.ID)
		if len(g.deptIDs) == 0 {
			continue
		}
		m := model.Membership{UserID: u.ID}
		var dept int
		if i < len(g.deptIDs) {
			dept = i
			head[dept] = i
			if dept > 0 {
				m.Manager = g.userIDs[head[g.deptParent[dept]]]
			}
		} else {
			dept = weighted(g.r, g.deptPick)
			switch x := g.r.Float64(); {
			case x < 0.75:
				m.Manager = g.userIDs[head[dept]]
			case x < 0.95 && len(members[dept]) > 0:
				m.Manager = g.userIDs[pick(g.r, members[dept])]
			}
		}
		m.Primary = g.deptIDs[dept]
		members[dept] = append(members[dept], i)
		if len(g.deptIDs) > 1 && g.chance(g.opts.OtherDepartmentsFraction) {
			for range 1 + g.r.IntN(2) {
				o := pick(g.r, g.deptIDs)
				if o != m.Primary && !slices.Contains(m.Others, o) {
					m.Others = append(m.Others, o)
				}
			}
		}
		if _, err := g.st.SetMembership(m); err != nil {
			return fmt.Errorf("membership of %q: %w", u.ID, err)
		}
	}
	if _, err := g.st.SetManagerDepth(g.opts.ManagerDepth); err != nil {
		return err
	}
	// Offboard some users; the first, the tenant's administrator, stays.
	for k := min(count(g.opts.InactiveFraction, n), n-1); k > 0; {
		id := g.userIDs[1+g.r.IntN(n-1)]
		if g.st.Inactive(id) {
			continue
		}
		if _, err := g.st.SetUserStatus(id, model.UserInactive); err != nil {
			return fmt.Errorf("user %q: %w", id, err)
		}
		k--
	}
	return nil
}

// grants gives round(GrantsPerUser*Users) grants: every user 1-3 roles
// when there are enough grants, drawn by weight (many reps, few
// administrators, narrowing roles rarely), the first user the admin
// template. Some expire after now.
func (g *gen) grants() error {
	n := len(g.userIDs)
	total := g.opts.Grants()
	perUser := min(3, len(g.roleIDs))
	total = min(total, n*perUser)
	counts := make([]int, n)
	switch {
	case total >= n:
		for i := range counts {
			counts[i] = 1
		}
		for extra := total - n; extra > 0; {
			if i := g.r.IntN(n); counts[i] < perUser {
				counts[i]++
				extra--
			}
		}
	case total > 0:
		counts[0] = 1 // the administrator
		for k := total - 1; k > 0; {
			if i := g.r.IntN(n); counts[i] == 0 {
				counts[i] = 1
				k--
			}
		}
	}
	admin := -1
	for i, id := range g.roleIDs {
		if id == "admin" {
			admin = i
		}
	}
	held := make([]int, 0, 3)
	for i, user := range g.userIDs {
		held = held[:0]
		for k := range counts[i] {
			role := -1
			if i == 0 && k == 0 && admin >= 0 {
				role = admin
			}
			for tries := 0; role < 0 || slices.Contains(held, role); tries++ {
				if tries < 50 {
					role = weighted(g.r, g.weight)
				} else {
					role = (role + 1) % len(g.roleIDs)
				}
			}
			held = append(held, role)
			grant := model.Grant{UserID: user, RoleID: g.roleIDs[role], GrantedBy: "system", GrantedAt: g.past()}
			if g.chance(g.opts.ExpiringFraction) {
				grant.ExpiresAt = g.expiry()
			}
			if _, err := g.st.GrantRole(grant, g.now); err != nil {
				return fmt.Errorf("grant of %q to %q: %w", grant.RoleID, user, err)
			}
		}
	}
	return nil
}

var kinds = []model.PrincipalKind{model.PrincipalUser, model.PrincipalDepartment, model.PrincipalRole}

// principal returns a principal of kind k, or of the next kind the tenant
// has when it has nothing of kind k.
func (g *gen) principal(k int) (model.Principal, error) {
	for range kinds {
		switch kind := kinds[k%len(kinds)]; {
		case kind == model.PrincipalUser && len(g.userIDs) > 0:
			return model.Principal{Kind: kind, ID: pick(g.r, g.userIDs)}, nil
		case kind == model.PrincipalDepartment && len(g.deptIDs) > 0:
			return model.Principal{Kind: kind, ID: pick(g.r, g.deptIDs), IncludeSubs: g.chance(0.5)}, nil
		case kind == model.PrincipalRole && len(g.roleIDs) > 0:
			return model.Principal{Kind: kind, ID: pick(g.r, g.roleIDs)}, nil
		}
		k++
	}
	return model.Principal{}, ErrNoPrincipals
}

func (g *gen) access() model.Access {
	if g.chance(0.6) {
		return model.AccessRead
	}
	return model.AccessReadWrite
}

// sharingRules makes the sharing rules, cycling through the pairs of
// principal kinds so that every kind owns and receives records.
func (g *gen) sharingRules() error {
	for i := range g.opts.SharingRules {
		owner, err := g.principal(i % 3)
		if err != nil {
			return err
		}
		with, err := g.principal(i%3 + i/3)
		for tries := 0; err == nil && with == owner && tries < 10; tries++ {
			with, err = g.principal(i%3 + i/3) // records shared with their own owner: draw again
		}
		if err != nil {
			return err
		}
		r := model.SharingRule{
			ID: fmt.Sprintf("rule_%04d", i+1), Module: pick(g.r, g.cat.Modules).ID,
			OwnedBy: owner, SharedWith: with, Access: g.access(),
		}
		if err := model.ValidateSharingRule(g.cat, r); err != nil {
			return fmt.Errorf("sharing rule %q: %w", r.ID, err)
		}
		if _, err := g.st.CreateSharingRule(r); err != nil {
			return fmt.Errorf("sharing rule %q: %w", r.ID, err)
		}
	}
	return nil
}

// RecordID returns the id of the n-th record of a module as generated
// tenants and requests name it, e.g. "account-000042".
func RecordID(module string, n int) string { return fmt.Sprintf("%s-%06d", module, n) }

// recordShares shares records with users, departments and roles, about
// two shares per shared record (records are numbered per module, see
// RecordID). Some shares expire after now.
func (g *gen) recordShares() error {
	n := g.opts.Shares
	records := max(10, n/(2*max(1, len(g.cat.Modules))))
	for i, dups := 0, 0; i < n; {
		p, err := g.principal(i % 3)
		if err != nil {
			return err
		}
		module := pick(g.r, g.cat.Modules).ID
		sh := model.RecordShare{
			Module: module, RecordID: RecordID(module, 1+g.r.IntN(records)), Principal: p,
			Access: g.access(), SharedAt: g.past(),
		}
		if len(g.userIDs) > 0 {
			sh.SharedBy = pick(g.r, g.userIDs)
		}
		if g.chance(g.opts.ExpiringFraction) {
			sh.ExpiresAt = g.expiry()
		}
		if _, dup := g.st.RecordShares[sh.Key()]; dup {
			// The record is shared with the principal already: draw
			// another, unless the tenant has too few principals left.
			if dups++; dups > 1000 {
				return fmt.Errorf("found no new record share after %d tries; the tenant has too few users, departments and roles for %d shares", dups, n)
			}
			continue
		}
		dups = 0
		if err := model.ValidateRecordShare(g.cat, sh); err != nil {
			return fmt.Errorf("share of %s %q: %w", sh.Module, sh.RecordID, err)
		}
		if _, err := g.st.ShareRecord(sh, g.now); err != nil {
			return fmt.Errorf("share of %s %q: %w", sh.Module, sh.RecordID, err)
		}
		i++
	}
	return nil
}
