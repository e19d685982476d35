package apiserver

import (
	"fmt"
	"sort"
	"strings"
)

// diffFiles is a unified diff (3 lines of context) of two sets of files.
func diffFiles(a, b map[string]string, aLabel, bLabel string) string {
	names := map[string]bool{}
	for n := range a {
		names[n] = true
	}
	for n := range b {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var out strings.Builder
	for _, n := range sorted {
		x, inA := a[n]
		y, inB := b[n]
		if inA && inB && x == y {
			continue
		}
		from, to := "a/"+n, "b/"+n
		if !inA {
			from = "/dev/null"
		}
		if !inB {
			to = "/dev/null"
		}
		fmt.Fprintf(&out, "--- %s\t(%s)\n+++ %s\t(%s)\n", from, aLabel, to, bLabel)
		out.WriteString(unified(splitLines(x), splitLines(y), 3))
	}
	return out.String()
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

type edit struct {
	op   byte // ' ', '-', '+'
	line string
}

// lineEdits is an LCS line diff; files too large for it are replaced whole.
func lineEdits(a, b []string) []edit {
	if len(a)*len(b) > 4_000_000 {
		var es []edit
		for _, l := range a {
			es = append(es, edit{'-', l})
		}
		for _, l := range b {
			es = append(es, edit{'+', l})
		}
		return es
	}
	n, m := len(a), len(b)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var es []edit
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			es = append(es, edit{' ', a[i]})
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			es = append(es, edit{'-', a[i]})
			i++
		default:
			es = append(es, edit{'+', b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		es = append(es, edit{'-', a[i]})
	}
	for ; j < m; j++ {
		es = append(es, edit{'+', b[j]})
	}
	return es
}

func unified(a, b []string, context int) string {
	es := lineEdits(a, b)
	var out strings.Builder
	for start := 0; start < len(es); {
		// find the next change
		c := start
		for c < len(es) && es[c].op == ' ' {
			c++
		}
		if c == len(es) {
			break
		}
		lo := max(c-context, 0)
		// extend the hunk while changes are within 2×context of each other
		hi := c
		for k := c; k < len(es); k++ {
			if es[k].op != ' ' {
				hi = k
			} else if k-hi > 2*context {
				break
			}
		}
		end := min(hi+context+1, len(es))
		aStart, bStart := 1, 1
		for _, e := range es[:lo] {
			if e.op != '+' {
				aStart++
			}
			if e.op != '-' {
				bStart++
			}
		}
		aLen, bLen := 0, 0
		for _, e := range es[lo:end] {
			if e.op != '+' {
				aLen++
			}
			if e.op != '-' {
				bLen++
			}
		}
		if aLen == 0 {
			aStart--
		}
		if bLen == 0 {
			bStart--
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", aStart, aLen, bStart, bLen)
		for _, e := range es[lo:end] {
			out.WriteByte(e.op)
			out.WriteString(e.line)
			if !strings.HasSuffix(e.line, "\n") {
				out.WriteString("\n\\ No newline at end of file\n")
			}
		}
		start = end
	}
	return out.String()
}
