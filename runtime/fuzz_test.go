package runtime

import "testing"

// FuzzPaginate: any page and page size (the CLI passes --page and
// --page-size through) give the right slice of the list, never a panic.
func FuzzPaginate(f *testing.F) {
	f.Add(1, 50, uint8(10))
	f.Add(3, 4, uint8(10))
	f.Add(0, 0, uint8(0))
	f.Add(-5, -1, uint8(3))
	f.Add(9223372036854775807, 500, uint8(10)) // (page-1)*size overflowed
	f.Add(2, 9223372036854775807, uint8(10))   // lo+size overflowed
	f.Fuzz(func(t *testing.T, page, size int, n uint8) {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		p, s, got := paginate(all, page, size)
		if p < 1 || s < 1 || len(got) > s {
			t.Fatalf("paginate(%d, %d) of %d: page %d, size %d, %d items", page, size, n, p, s, len(got))
		}
		// The page starts at item (p-1)*s and is full unless it is the last.
		if len(got) > 0 {
			if first := got[0]; (first%s != 0) || first/s != p-1 {
				t.Fatalf("paginate(%d, %d) of %d: page %d of size %d starts at item %d", page, size, n, p, s, first)
			}
			if last := got[len(got)-1]; len(got) < s && last != len(all)-1 {
				t.Fatalf("paginate(%d, %d) of %d: short page ends at item %d", page, size, n, last)
			}
		} else if len(all) > 0 && p-1 <= (len(all)-1)/s { // (p-1)*s < len(all), without overflow
			t.Fatalf("paginate(%d, %d) of %d: empty page %d inside the list", page, size, n, p)
		}
	})
}
