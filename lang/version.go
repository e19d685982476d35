package lang

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Version is the ferry version that required_version constraints are checked
// against. cmd/ferry sets it from its build information.
var Version = "0.1.0"

var tenantRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

var constraintRe = regexp.MustCompile(`^\s*(=|!=|>=|<=|>|<|~>)?\s*v?([0-9]+(?:\.[0-9]+){0,2})\s*$`)

// VersionSatisfies reports whether version satisfies a comma-separated list of
// constraints like ">= 0.1, < 1.0" (operators = != > >= < <= ~>).
func VersionSatisfies(version, constraints string) (bool, error) {
	v, err := parseVersion(strings.TrimPrefix(strings.SplitN(version, "-", 2)[0], "v"))
	if err != nil {
		return false, fmt.Errorf("invalid ferry version %q", version)
	}
	if strings.TrimSpace(constraints) == "" {
		return false, fmt.Errorf("empty version constraint")
	}
	ok := true
	for _, c := range strings.Split(constraints, ",") {
		m := constraintRe.FindStringSubmatch(c)
		if m == nil {
			return false, fmt.Errorf("invalid version constraint %q", strings.TrimSpace(c))
		}
		want, _ := parseVersion(m[2])
		cmp := compareVersions(v, want)
		switch m[1] {
		case "", "=":
			ok = ok && cmp == 0
		case "!=":
			ok = ok && cmp != 0
		case ">":
			ok = ok && cmp > 0
		case ">=":
			ok = ok && cmp >= 0
		case "<":
			ok = ok && cmp < 0
		case "<=":
			ok = ok && cmp <= 0
		case "~>":
			// ~> 1.2 allows >= 1.2, < 2.0; ~> 1.2.3 allows >= 1.2.3, < 1.3.0.
			parts := strings.Count(m[2], ".") + 1
			upper := want
			if parts >= 3 {
				upper = [3]int{want[0], want[1] + 1, 0}
			} else {
				upper = [3]int{want[0] + 1, 0, 0}
			}
			ok = ok && cmp >= 0 && compareVersions(v, upper) < 0
		}
	}
	return ok, nil
}

func parseVersion(s string) ([3]int, error) {
	var out [3]int
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return out, fmt.Errorf("too many parts")
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, fmt.Errorf("invalid number %q", p)
		}
		out[i] = n
	}
	return out, nil
}

func compareVersions(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}
