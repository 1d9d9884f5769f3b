//go:build !linux

package engine

// adviseHugePages does nothing where large pages cannot be asked for.
func adviseHugePages([]byte) {}

// collapseHugePages does nothing where large pages cannot be asked for.
func collapseHugePages([]byte) {}
