package model

import (
	"fmt"
	"maps"
	"strings"
)

// MaxActionAliases bounds the action aliases of a tenant.
const MaxActionAliases = 500

// ValidateActionAlias checks an alias's name and target against the
// catalog and returns the permission the target stands for: a function
// when the target is one, else a module verb written <module>.<verb>. A
// name may not be a catalog verb or function itself: an alias renames,
// it never shadows what a name already means.
func ValidateActionAlias(cat *Catalog, nameField, name, targetField, target string) (Permission, error) {
	if err := invalidIf(nameField, ReasonInvalidIdentifier, aliasClass.check(name)); err != nil {
		return Permission{}, err
	}
	if cat.HasVerb(name) || cat.HasFunction(name) {
		return Permission{}, Invalid(nameField, ReasonInvalidValue,
			fmt.Sprintf("%q already names a verb or function of the catalog; an alias gives a new name", name))
	}
	return ParseActionTarget(cat, targetField, target)
}

// ParseActionTarget reads what an alias stands for: a function id of the
// catalog, or <module>.<verb> of a catalog module and verb.
func ParseActionTarget(cat *Catalog, field, target string) (Permission, error) {
	if target == "" {
		return Permission{}, Invalid(field, ReasonMissingField, "is required: a function id or <module>.<verb>")
	}
	if cat.HasFunction(target) {
		return Permission{Kind: KindFunction, Function: target}, nil
	}
	module, verb, ok := strings.Cut(target, ".")
	if !ok || strings.Contains(verb, ".") {
		return Permission{}, Invalid(field, ReasonInvalidValue,
			fmt.Sprintf("%q is neither a function of the catalog nor <module>.<verb>", target))
	}
	if err := cat.CheckModule(field, module); err != nil {
		return Permission{}, err
	}
	if err := cat.CheckVerb(field, verb); err != nil {
		return Permission{}, err
	}
	return Permission{Kind: KindModule, Module: module, Verb: verb}, nil
}

// SetActionAlias makes name stand for target (ValidateActionAlias checks
// both first), replacing what it stood for.
func (s *TenantState) SetActionAlias(name, target string) (Change, error) {
	before, had := s.Settings.ActionAliases[name]
	if !had {
		if err := s.room("action aliases", len(s.Settings.ActionAliases), MaxActionAliases); err != nil {
			return Change{}, err
		}
	}
	next := maps.Clone(s.Settings.ActionAliases)
	if next == nil {
		next = map[string]string{}
	}
	next[name] = target
	s.Settings.ActionAliases = next
	c := Change{Action: "action_alias.set", Target: "action_alias/" + name, After: map[string]string{"name": name, "target": target}}
	if had {
		c.Before = map[string]string{"name": name, "target": before}
	}
	return c, nil
}

// DeleteActionAlias removes an alias.
func (s *TenantState) DeleteActionAlias(name string) (Change, error) {
	before, ok := s.Settings.ActionAliases[name]
	if !ok {
		return Change{}, &NotFoundError{Reason: ReasonActionAliasNotFound, What: fmt.Sprintf("action alias %q in tenant %q", name, s.ID)}
	}
	next := maps.Clone(s.Settings.ActionAliases)
	delete(next, name)
	if len(next) == 0 {
		next = nil
	}
	s.Settings.ActionAliases = next
	return Change{Action: "action_alias.delete", Target: "action_alias/" + name, Before: map[string]string{"name": name, "target": before}}, nil
}
