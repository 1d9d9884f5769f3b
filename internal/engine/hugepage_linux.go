package engine

import "syscall"

// madvCollapse is Linux's MADV_COLLAPSE (6.1 and later), which the syscall
// package does not name.
const madvCollapse = 25

// adviseHugePages asks Linux to back b with 2 MiB pages: MADV_HUGEPAGE for
// pages not yet touched, and MADV_COLLAPSE for memory the Go heap reuses,
// whose pages exist already. Both are hints; where transparent huge pages
// are off or the kernel is older, the block keeps small pages and only the
// TLB benefit of packing is lost.
func adviseHugePages(b []byte) {
	_ = syscall.Madvise(b, syscall.MADV_HUGEPAGE)
	_ = syscall.Madvise(b, madvCollapse)
}
