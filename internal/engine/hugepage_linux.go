package engine

import "syscall"

// madvCollapse is Linux's MADV_COLLAPSE (6.1 and later), which the syscall
// package does not name.
const madvCollapse = 25

// adviseHugePages asks Linux to back b, a new block not yet touched, with
// 2 MiB pages (MADV_HUGEPAGE). It is a hint; where transparent huge pages
// are off, the block keeps small pages and only the TLB benefit of packing
// is lost.
func adviseHugePages(b []byte) {
	_ = syscall.Madvise(b, syscall.MADV_HUGEPAGE)
}

// collapseHugePages turns the small pages of a filled block into 2 MiB ones
// now (MADV_COLLAPSE): memory the Go heap reuses was touched before, so the
// advice alone would leave it to khugepaged's slow scan. It can stall in
// reclaim, so the engine calls it with no lock held. Blocks under 2 MiB are
// left alone, and kernels without MADV_COLLAPSE refuse it harmlessly.
func collapseHugePages(b []byte) {
	if len(b) >= hugePage {
		_ = syscall.Madvise(b, madvCollapse)
	}
}
