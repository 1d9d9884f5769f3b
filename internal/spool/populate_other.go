//go:build !linux

package spool

import "errors"

// populate cannot map pages ahead where MADV_POPULATE_WRITE is not known.
func populate([]byte) error { return errors.ErrUnsupported }
