package datagen

import (
	"fmt"
	"slices"
	"strings"

	"github.com/crmauthz/crmauthz/internal/model"
)

// How often tenants grant the roles of each template, relative to a
// custom role's 2: many reps, few administrators.
var templateWeights = map[string]float64{
	"admin": 0.2, "sales_manager": 3, "sales_rep": 12, "customer_service": 6, "finance_readonly": 3, "read_only": 4,
}

const (
	customWeight = 2
	denyWeight   = 0.2
)

var (
	areas = []string{"sales", "presales", "inside_sales", "key_account", "channel", "service", "support", "finance",
		"billing", "marketing", "operations", "legal", "procurement", "analytics"}
	jobs = []string{"rep", "lead", "manager", "analyst", "viewer", "specialist", "coordinator", "director"}
	// Verbs that read records, and verbs that change them; custom roles
	// grant the second at a scope no wider than the first.
	readVerbs  = []verbChance{{"list", 0.95}, {"read", 0.95}, {"print", 0.5}, {"export", 0.2}}
	writeVerbs = []verbChance{{"create", 0.8}, {"update", 0.8}, {"delete", 0.3}, {"assign", 0.15},
		{"share", 0.25}, {"import", 0.1}, {"bulk_update", 0.1}, {"bulk_delete", 0.05}, {"merge", 0.1}}
	// What narrowing roles deny: never read or update, so they never
	// change which fields a user sees.
	denyVerbs     = []string{"export", "print", "bulk_delete", "delete", "merge", "import"}
	denyFunctions = []string{"data.export", "report.export", "email.mass_send", "data.import", "price.override"}
	fieldStates   = []model.FieldState{model.FieldHidden, model.FieldReadOnly, model.FieldReadWrite}
)

// verbChance is a verb and how likely a custom role grants it.
type verbChance struct {
	verb string
	p    float64
}

// scope draws a data scope: every scope appears, none rarely.
func (g *gen) scope() model.Scope {
	switch x := g.r.Float64(); {
	case x < 0.05:
		return model.ScopeNone
	case x < 0.25:
		return model.ScopeSelf
	case x < 0.5:
		return model.ScopeDept
	case x < 0.75:
		return model.ScopeDeptTree
	}
	return model.ScopeOrg
}

// roles creates a role from every template of the bundle, then the custom
// roles.
func (g *gen) roles() error {
	for _, t := range g.b.SortedTemplates() {
		r, _ := g.b.FromTemplate(t.ID)
		if _, err := g.st.CreateRole(r); err != nil {
			return fmt.Errorf("role %q: %w", r.ID, err)
		}
		w, ok := templateWeights[t.ID]
		if !ok {
			w = customWeight
		}
		g.addRole(r.ID, false, w)
	}
	depth := make(map[string]int, g.opts.Roles) // longest inheritance chain below a role
	var functions []string
	for _, f := range g.cat.Functions {
		if f.ID != "admin.super" {
			functions = append(functions, f.ID)
		}
	}
	for i := range g.opts.Roles {
		var r model.Role
		deny := i%20 == 1
		if deny {
			r = g.denyRole(i)
		} else {
			r = g.customRole(i, functions)
			r.Inherits = g.inherits(depth)
		}
		for _, p := range r.Inherits {
			depth[r.ID] = max(depth[r.ID], depth[p]+1)
		}
		if err := model.ValidateRoleFields(g.cat, r); err != nil {
			return fmt.Errorf("role %q: %w", r.ID, err)
		}
		if _, err := g.st.CreateRole(r); err != nil {
			return fmt.Errorf("role %q: %w", r.ID, err)
		}
		w := float64(customWeight)
		if deny {
			w = denyWeight
		}
		g.addRole(r.ID, deny, w)
	}
	return nil
}

func (g *gen) addRole(id string, deny bool, weight float64) {
	total := weight
	if n := len(g.weight); n > 0 {
		total += g.weight[n-1]
	}
	g.roleIDs = append(g.roleIDs, id)
	g.denies = append(g.denies, deny)
	g.weight = append(g.weight, total)
}

// title turns an identifier into words for a display name.
func title(id string) string {
	words := strings.Split(id, "_")
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}

// customRole makes a role of module verbs (the reading verbs at one scope,
// the changing verbs at the same or a narrower one), field rules and
// functions.
func (g *gen) customRole(i int, functions []string) model.Role {
	area, job := pick(g.r, areas), pick(g.r, jobs)
	r := model.Role{
		ID:          fmt.Sprintf("%s_%s_%d", area, job, i+1),
		DisplayName: fmt.Sprintf("%s %s %d", title(area), title(job), i+1),
	}
	p := &r.Permissions
	mods := g.r.Perm(len(g.cat.Modules))[:1+g.r.IntN(min(8, len(g.cat.Modules)))]
	slices.Sort(mods)
	for _, mi := range mods {
		m := &g.cat.Modules[mi]
		read := g.scope()
		grant := model.ModuleGrant{Module: m.ID, Scope: read}
		for _, v := range readVerbs {
			if g.cat.HasVerb(v.verb) && g.chance(v.p) {
				grant.Verbs = append(grant.Verbs, v.verb)
			}
		}
		// Changing reaches no further than reading, and rarely nowhere.
		write := model.ModuleGrant{Module: m.ID, Scope: read}
		if rank := read.Rank(); rank > 1 {
			write.Scope = model.Scopes[1+g.r.IntN(rank)]
		}
		if g.chance(0.65) {
			for _, v := range writeVerbs {
				if g.cat.HasVerb(v.verb) && g.chance(v.p) {
					write.Verbs = append(write.Verbs, v.verb)
				}
			}
		}
		switch {
		case len(write.Verbs) > 0 && write.Scope == grant.Scope:
			grant.Verbs = append(grant.Verbs, write.Verbs...)
			write.Verbs = nil
		case len(grant.Verbs) == 0 && len(write.Verbs) == 0:
			grant.Verbs = []string{model.VerbRead}
		}
		if len(grant.Verbs) > 0 {
			p.Modules = append(p.Modules, grant)
		}
		if len(write.Verbs) > 0 {
			p.Modules = append(p.Modules, write)
		}
		if len(m.Fields) > 0 && g.chance(0.35) {
			for _, fi := range g.r.Perm(len(m.Fields))[:1+g.r.IntN(min(3, len(m.Fields)))] {
				p.Fields = append(p.Fields, model.FieldRule{Module: m.ID, Field: m.Fields[fi], State: pick(g.r, fieldStates)})
			}
		}
	}
	for _, fi := range g.r.Perm(len(functions))[:g.r.IntN(min(5, len(functions))+1)] {
		f := functions[fi]
		if strings.HasPrefix(f, "admin.") && !g.chance(0.1) {
			continue // administration rights are rare outside the admin template
		}
		p.Functions = append(p.Functions, f)
	}
	return r
}

// denyRole makes a narrowing role: denied verbs on a few modules and
// denied functions.
func (g *gen) denyRole(i int) model.Role {
	r := model.Role{
		ID:          fmt.Sprintf("restricted_%d", i+1),
		DisplayName: fmt.Sprintf("Restricted %d", i+1),
		Description: "Narrowing role: denies exporting, printing and mass changes whatever other roles allow.",
	}
	p := &r.Permissions
	mods := g.r.Perm(len(g.cat.Modules))[:1+g.r.IntN(min(3, len(g.cat.Modules)))]
	slices.Sort(mods)
	for _, mi := range mods {
		d := model.ModuleGrant{Module: g.cat.Modules[mi].ID}
		for _, v := range denyVerbs {
			if g.cat.HasVerb(v) && g.chance(0.4) {
				d.Verbs = append(d.Verbs, v)
			}
		}
		if len(d.Verbs) == 0 && g.cat.HasVerb("export") {
			d.Verbs = []string{"export"}
		}
		if len(d.Verbs) > 0 {
			p.DenyModules = append(p.DenyModules, d)
		}
	}
	for _, f := range denyFunctions {
		if g.cat.HasFunction(f) && g.chance(0.5) {
			p.DenyFunctions = append(p.DenyFunctions, f)
		}
	}
	return r
}

// inherits draws the roles a custom role inherits: none for most, one or
// two for some, often the deepest role so far (so that chains reach
// model.MaxInheritDepth in large tenants), else among the roles just made
// or any role, now and then a narrowing role, never one holding
// admin.super.
func (g *gen) inherits(depth map[string]int) []string {
	if len(g.roleIDs) == 0 || !g.chance(0.3) {
		return nil
	}
	n := 1
	if g.chance(0.2) {
		n = 2
	}
	var out []string
	for range n {
		for range 10 { // a few tries for a parent that fits
			var i int
			switch x := g.r.Float64(); {
			case x < 0.3:
				i = g.deepest(depth)
			case x < 0.7:
				i = len(g.roleIDs) - 1 - g.r.IntN(min(4, len(g.roleIDs)))
			default:
				i = g.r.IntN(len(g.roleIDs))
			}
			id := g.roleIDs[i]
			if (g.denies[i] && !g.chance(0.1)) || depth[id] >= model.MaxInheritDepth || slices.Contains(out, id) ||
				slices.Contains(g.st.Roles[id].Permissions.Functions, "admin.super") {
				continue
			}
			out = append(out, id)
			break
		}
	}
	return out
}

// deepest returns the index of the first role made of the longest
// inheritance chain below model.MaxInheritDepth.
func (g *gen) deepest(depth map[string]int) int {
	best := 0
	for i, id := range g.roleIDs {
		if d := depth[id]; d < model.MaxInheritDepth && d > depth[g.roleIDs[best]] {
			best = i
		}
	}
	return best
}
