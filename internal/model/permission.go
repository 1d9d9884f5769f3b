package model

import (
	"errors"
	"fmt"
)

// Kind is the kind of permission a check asks about.
type Kind uint8

// Permission kinds.
const (
	KindModule   Kind = iota + 1 // a record verb on a module: account read
	KindFunction                 // a feature: report.export
	KindField                    // reading or writing one field of a module
)

// Permission is the thing a check asks about.
type Permission struct {
	Kind     Kind
	Module   string  // KindModule, KindField
	Verb     string  // KindModule
	Function string  // KindFunction
	Field    string  // KindField
	Write    bool    // KindField: write access rather than read
	Record   *Record // KindModule: the record, when the check is about one
}

// ModulePerm returns the permission to use verb on module.
func ModulePerm(module, verb string) Permission {
	return Permission{Kind: KindModule, Module: module, Verb: verb}
}

// FunctionPerm returns the permission to use a function.
func FunctionPerm(fn string) Permission { return Permission{Kind: KindFunction, Function: fn} }

// FieldPerm returns the permission to read (or write) a field.
func FieldPerm(module, field string, write bool) Permission {
	return Permission{Kind: KindField, Module: module, Field: field, Write: write}
}

// String renders the permission for logs and explanations.
func (p Permission) String() string {
	switch p.Kind {
	case KindModule:
		if p.Record != nil {
			return fmt.Sprintf("module %s %s on record %s", p.Module, p.Verb, p.Record.ID)
		}
		return fmt.Sprintf("module %s %s", p.Module, p.Verb)
	case KindFunction:
		return "function " + p.Function
	case KindField:
		access := "read"
		if p.Write {
			access = "write"
		}
		return fmt.Sprintf("field %s.%s %s", p.Module, p.Field, access)
	}
	return "unknown permission"
}

// Validate checks the permission against the catalog; prefix is its request
// path, e.g. "permission" or "items[3].permission".
func (p Permission) Validate(cat *Catalog, prefix string) error {
	// Checked under field names relative to prefix, which is joined only
	// to an error: a valid permission costs no allocation.
	err := p.validate(cat)
	if err == nil {
		return nil // before errors.As, whose target escapes
	}
	var inv *InvalidError
	if errors.As(err, &inv) {
		c := *inv
		c.Field = prefix + c.Field
		return &c
	}
	return err
}

func (p Permission) validate(cat *Catalog) error {
	switch p.Kind {
	case KindModule:
		if err := cat.CheckModule(".module.module", p.Module); err != nil {
			return err
		}
		if err := cat.CheckVerb(".module.verb", p.Verb); err != nil {
			return err
		}
		if p.Record != nil {
			return p.Record.Validate(".module.record")
		}
		return nil
	case KindFunction:
		return cat.CheckFunction(".function.function", p.Function)
	case KindField:
		if err := cat.CheckModule(".field.module", p.Module); err != nil {
			return err
		}
		return cat.CheckField(".field.field", p.Module, p.Field)
	}
	return Invalid("", ReasonMissingField, "must set one of module, function or field")
}
