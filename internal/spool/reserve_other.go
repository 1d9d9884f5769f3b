//go:build !linux

package spool

import "os"

// reserve leaves f sparse where the system has no fallocate(2).
func reserve(*os.File, int64) error { return nil }
