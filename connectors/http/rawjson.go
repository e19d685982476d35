package httpconn

import "encoding/json"

// The source hands records on as raw JSON, slices of the page's body: the
// engine decodes them in its parallel workers and the durable runtime stores
// them as they are, so the reading goroutine never builds a decoded copy of a
// whole page (several times the body's size) only to have it encoded again.
//
// The functions below walk a document that json.Valid has accepted, so they
// need no error handling of their own; they only find where values end.

// rawAt returns the value at a dotted path of a valid JSON document, or nil
// when a segment is missing or crosses something that is not an object. Of
// duplicate keys the last wins, as in encoding/json and connectors.DecodeJSON.
func rawAt(doc []byte, path []string) []byte {
	v := doc[skipSpace(doc, 0):]
	for _, seg := range path {
		if len(v) == 0 || v[0] != '{' {
			return nil
		}
		var found []byte
		for i := skipSpace(v, 1); v[i] != '}'; {
			keyEnd := skipString(v, i)
			key := v[i:keyEnd]
			i = skipSpace(v, skipSpace(v, keyEnd)+1) // past the colon
			end := skipValue(v, i)
			if keyIs(key, seg) {
				found = v[i:end]
			}
			if i = skipSpace(v, end); v[i] == ',' {
				i = skipSpace(v, i+1)
			}
		}
		v = found
	}
	return v
}

// elements splits a valid JSON array into its elements.
func elements(arr []byte) []json.RawMessage {
	var out []json.RawMessage
	for i := skipSpace(arr, 1); arr[i] != ']'; {
		end := skipValue(arr, i)
		out = append(out, json.RawMessage(arr[i:end:end]))
		if i = skipSpace(arr, end); arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
	}
	return out
}

func keyIs(quoted []byte, name string) bool {
	inner := quoted[1 : len(quoted)-1]
	for _, c := range inner {
		if c == '\\' { // escaped: rare, let encoding/json unescape it
			var s string
			return json.Unmarshal(quoted, &s) == nil && s == name
		}
	}
	return string(inner) == name
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at b[i].
func skipString(b []byte, i int) int {
	for j := i + 1; ; j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
}

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; ; j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
	}
	j := i // number, true, false, null
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}

// rawKind names the JSON type of a raw value, for messages.
func rawKind(v []byte) string {
	switch v[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}
