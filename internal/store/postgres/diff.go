package postgres

import "slices"

// The diff of a write looks at every row of a large tenant but sorts only
// what changed: statements go out in key order, so that a write's batch is
// the same whatever the maps' order, and sorting tens of thousands of rows
// twice per write was a large part of a write's cost.

// changed returns the values of m that other lacks or holds otherwise (same
// reports false), in the order cmp gives their keys.
func changed[K comparable, V any](m, other map[K]V, same func(a, b V) bool, cmp func(a, b K) int) []V {
	var keys []K
	for k, v := range m {
		if o, ok := other[k]; !ok || !same(o, v) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, cmp)
	out := make([]V, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// gone returns the values of m that other lacks, in the order cmp gives
// their keys.
func gone[K comparable, V any](m, other map[K]V, cmp func(a, b K) int) []V {
	return changed(m, other, func(V, V) bool { return true }, cmp)
}

func equal[V comparable](a, b V) bool { return a == b }
