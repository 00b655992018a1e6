//go:build !linux

package hugepage

func mark([]byte) {}
