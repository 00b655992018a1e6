// Package perm handles row orders: order[i] is the old row that becomes row i.
package perm

// Inverse returns inv with inv[order[i]] = i, the new row of every old row,
// or false when order is not a permutation of 0..len(order)-1.
func Inverse(order []int32) ([]int32, bool) {
	inv := make([]int32, len(order))
	for i := range inv {
		inv[i] = -1
	}
	for i, old := range order {
		if old < 0 || int(old) >= len(order) || inv[old] >= 0 {
			return nil, false
		}
		inv[old] = int32(i)
	}
	return inv, true
}
