package patch

import (
	"fmt"
	"strconv"
	"strings"
)

// parsePointer splits an RFC 6901 JSON Pointer into its unescaped reference
// tokens. "" is the whole document.
func parsePointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("JSON pointer %s must be empty or start with \"/\"", showPointer(p))
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		if !strings.Contains(s, "~") {
			continue
		}
		var sb strings.Builder
		for j := 0; j < len(s); j++ {
			if s[j] != '~' {
				sb.WriteByte(s[j])
				continue
			}
			if j+1 < len(s) && s[j+1] == '0' {
				sb.WriteByte('~')
			} else if j+1 < len(s) && s[j+1] == '1' {
				sb.WriteByte('/')
			} else {
				return nil, fmt.Errorf("JSON pointer %s: \"~\" must be followed by 0 or 1 (write ~0 for \"~\" and ~1 for \"/\")", showPointer(p))
			}
			j++
		}
		parts[i] = sb.String()
	}
	return parts, nil
}

// formatPointer joins reference tokens into a JSON Pointer, escaping them.
func formatPointer(tokens []string) string {
	var sb strings.Builder
	for _, t := range tokens {
		sb.WriteByte('/')
		sb.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return sb.String()
}

// isPrefix says whether a is a prefix of (or equal to) b.
func isPrefix(a, b []string) bool {
	if len(a) > len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// index parses an array index token for an array of length n. With end, the
// position after the last element (n, or "-") is allowed, as add allows it.
func index(tok string, n int, end bool) (int, *Error) {
	if tok == "-" {
		if end {
			return n, nil
		}
		return 0, &Error{Msg: `"-" (the end of the array) can only be used by add`}
	}
	if tok == "" {
		return 0, &Error{Msg: `array index "" is not a number`}
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return 0, &Error{Msg: fmt.Sprintf("array index %q is not a number", tok)}
		}
	}
	if len(tok) > 1 && tok[0] == '0' {
		return 0, &Error{Msg: fmt.Sprintf("array index %q has a leading zero", tok)}
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i > n || (i == n && !end) {
		if end {
			return 0, &Error{Msg: fmt.Sprintf("array index %s is out of range (the array has %d elements; add takes 0 to %d or \"-\")", tok, n, n)}
		}
		return 0, &Error{Msg: fmt.Sprintf("array index %s is out of range (the array has %d elements)", tok, n)}
	}
	return i, nil
}
