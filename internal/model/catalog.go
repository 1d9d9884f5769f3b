package model

import (
	"fmt"
	"slices"
)

// Catalog is the permission vocabulary every tenant shares: the modules
// (record types) with their fields, the record verbs and the functions. It is
// data (policies/catalog.yaml) and read-only once built.
type Catalog struct {
	Verbs     []string         `yaml:"verbs"`
	Modules   []CatalogModule  `yaml:"modules"`
	Functions []CatalogFeature `yaml:"functions"`

	verbs     map[string]bool
	modules   map[string]*CatalogModule
	functions map[string]bool
}

// CatalogModule is a record type such as account or lead and its fields.
type CatalogModule struct {
	ID     string   `yaml:"id"`
	Name   string   `yaml:"name"`
	Fields []string `yaml:"fields"`

	fields map[string]bool
}

// CatalogFeature is a function permission such as report.export.
type CatalogFeature struct {
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
}

// Init validates the catalog and builds its lookup tables. It must be called
// once before the catalog is used.
func (c *Catalog) Init() error {
	c.verbs = make(map[string]bool, len(c.Verbs))
	for i, v := range c.Verbs {
		if err := ValidateName(fmt.Sprintf("verbs[%d]", i), v); err != nil {
			return err
		}
		if c.verbs[v] {
			return fmt.Errorf("catalog: verb %q listed twice", v)
		}
		c.verbs[v] = true
	}
	for _, required := range []string{VerbRead, VerbUpdate} {
		if !c.verbs[required] {
			return fmt.Errorf("catalog: verb %q is required (fields follow it)", required)
		}
	}
	c.modules = make(map[string]*CatalogModule, len(c.Modules))
	for i := range c.Modules {
		m := &c.Modules[i]
		if err := ValidateName(fmt.Sprintf("modules[%d].id", i), m.ID); err != nil {
			return err
		}
		if c.modules[m.ID] != nil {
			return fmt.Errorf("catalog: module %q listed twice", m.ID)
		}
		m.fields = make(map[string]bool, len(m.Fields))
		for j, f := range m.Fields {
			if err := ValidateName(fmt.Sprintf("modules[%d].fields[%d]", i, j), f); err != nil {
				return err
			}
			if m.fields[f] {
				return fmt.Errorf("catalog: field %q of module %q listed twice", f, m.ID)
			}
			m.fields[f] = true
		}
		c.modules[m.ID] = m
	}
	c.functions = make(map[string]bool, len(c.Functions))
	for i, f := range c.Functions {
		if err := ValidateFunctionID(fmt.Sprintf("functions[%d].id", i), f.ID); err != nil {
			return err
		}
		if c.functions[f.ID] {
			return fmt.Errorf("catalog: function %q listed twice", f.ID)
		}
		c.functions[f.ID] = true
	}
	return nil
}

// HasVerb reports whether v is a record verb.
func (c *Catalog) HasVerb(v string) bool { return c.verbs[v] }

// Module returns the module with id, or nil.
func (c *Catalog) Module(id string) *CatalogModule { return c.modules[id] }

// HasFunction reports whether id is a function permission.
func (c *Catalog) HasFunction(id string) bool { return c.functions[id] }

// HasField reports whether the module has the field.
func (m *CatalogModule) HasField(f string) bool { return m.fields[f] }

// CheckModule validates a module id against the catalog.
func (c *Catalog) CheckModule(field, id string) error {
	if err := ValidateName(field, id); err != nil {
		return err
	}
	if c.modules[id] == nil {
		return Invalid(field, ReasonUnknownModule, fmt.Sprintf("unknown module %q", id))
	}
	return nil
}

// CheckVerb validates a record verb against the catalog.
func (c *Catalog) CheckVerb(field, v string) error {
	if err := ValidateName(field, v); err != nil {
		return err
	}
	if !c.verbs[v] {
		return Invalid(field, ReasonUnknownVerb, fmt.Sprintf("unknown verb %q (known: %v)", v, c.Verbs))
	}
	return nil
}

// CheckFunction validates a function id against the catalog.
func (c *Catalog) CheckFunction(field, id string) error {
	if err := ValidateFunctionID(field, id); err != nil {
		return err
	}
	if !c.functions[id] {
		return Invalid(field, ReasonUnknownFunction, fmt.Sprintf("unknown function %q", id))
	}
	return nil
}

// CheckField validates a field id of a known module.
func (c *Catalog) CheckField(field, module, id string) error {
	if err := ValidateName(field, id); err != nil {
		return err
	}
	if m := c.modules[module]; m == nil || !m.fields[id] {
		return Invalid(field, ReasonUnknownField, fmt.Sprintf("module %q has no field %q", module, id))
	}
	return nil
}

// SortedVerbs returns verbs ordered as the catalog lists them.
func (c *Catalog) SortedVerbs(verbs []string) []string {
	out := slices.Clone(verbs)
	slices.SortFunc(out, func(a, b string) int {
		return slices.Index(c.Verbs, a) - slices.Index(c.Verbs, b)
	})
	return out
}
