package plugin

import (
	"bytes"
	"strconv"
)

// Small, allocation-free helpers to read and rewrite one top-level member
// of a JSON object, for filters and partitioners that look at a field of
// the value. They scan the text once and never build a document tree;
// encoding/json is far slower inside a sandboxed guest.

// JSONField returns the raw text of the top-level member name of the JSON
// object doc (a string keeps its quotes). ok is false when doc is not an
// object, is malformed before the member, or lacks it. The scan stops at
// the member it finds: text after it is not checked.
func JSONField(doc []byte, name string) (raw []byte, ok bool) {
	start, end, ok := jsonMember(doc, name)
	if !ok {
		return nil, false
	}
	return doc[start:end], true
}

// JSONString returns the top-level member name as a string value. It
// aliases doc when the string has no escapes and decodes it otherwise. ok
// is false when the member is missing or not a string.
func JSONString(doc []byte, name string) ([]byte, bool) {
	raw, ok := JSONField(doc, name)
	if !ok || len(raw) < 2 || raw[0] != '"' {
		return nil, false
	}
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') >= 0 {
		s, err := strconv.Unquote(string(raw))
		if err != nil {
			return nil, false
		}
		return []byte(s), true
	}
	return body, true
}

// JSONReplace returns a copy of doc with the value of the top-level member
// name replaced by the raw JSON text value. ok is false (and doc is
// returned) when the member is missing.
func JSONReplace(doc []byte, name string, value []byte) ([]byte, bool) {
	start, end, ok := jsonMember(doc, name)
	if !ok {
		return doc, false
	}
	out := make([]byte, 0, len(doc)-(end-start)+len(value))
	out = append(out, doc[:start]...)
	out = append(out, value...)
	return append(out, doc[end:]...), true
}

// jsonMember finds the value span [start, end) of member name.
func jsonMember(doc []byte, name string) (start, end int, ok bool) {
	JSONEach(doc, func(key []byte, s, e int) bool {
		if string(key) == name {
			start, end, ok = s, e, true
			return false
		}
		return true
	})
	return start, end, ok
}

// JSONEach calls fn for each top-level member of the JSON object doc, in
// order, with its key (unescaped; it aliases doc when the key has no
// escapes) and the span doc[start:end] of its raw value, until fn returns
// false. It reports whether doc was scanned to its end as a well-formed
// object (false when fn stopped early or doc is not an object). One pass
// over doc serves any number of fields.
//
// The scanner is one function with plain loops, except over strings:
// inside a WebAssembly guest a Go function call costs far more than a byte
// comparison, but a compiled Go loop costs far more per byte than the
// runtime's assembly IndexByte, which stringEnd uses.
func JSONEach(doc []byte, fn func(key []byte, start, end int) bool) bool {
	n := len(doc)
	i := 0
	for i < n && isSpace(doc[i]) {
		i++
	}
	if i >= n || doc[i] != '{' {
		return false
	}
	i++
	for i < n && isSpace(doc[i]) {
		i++
	}
	if i < n && doc[i] == '}' {
		return true
	}
	for i < n {
		// Key.
		if doc[i] != '"' {
			return false
		}
		ks := i + 1
		// Keys are short: one inline pass finds the closing quote and
		// any escape, without a call.
		esc := false
		for i = ks; i < n && i < ks+shortString && doc[i] != '"'; i++ {
			esc = esc || doc[i] == '\\'
		}
		if esc || i == ks+shortString {
			if i = stringEnd(doc, ks); i < 0 {
				return false
			}
			esc = bytes.IndexByte(doc[ks:i], '\\') >= 0
		} else if i >= n {
			return false
		}
		key := doc[ks:i]
		if esc {
			s, err := strconv.Unquote(string(doc[ks-1 : i+1]))
			if err != nil {
				return false
			}
			key = []byte(s)
		}
		i++
		for i < n && isSpace(doc[i]) {
			i++
		}
		if i >= n || doc[i] != ':' {
			return false
		}
		i++
		for i < n && isSpace(doc[i]) {
			i++
		}
		// Value.
		vs := i
		if i >= n {
			return false
		}
		switch doc[i] {
		case '"':
			if i = stringEnd(doc, i+1); i < 0 {
				return false
			}
			i++
		case '{', '[':
			depth := 0
		nested:
			for ; i < n; i++ {
				switch doc[i] {
				case '"':
					if i = stringEnd(doc, i+1); i < 0 {
						return false
					}
				case '{', '[':
					depth++
				case '}', ']':
					depth--
					if depth == 0 {
						i++
						break nested
					}
				}
			}
			if depth != 0 {
				return false
			}
		default:
			for i < n && doc[i] != ',' && doc[i] != '}' && doc[i] != ']' && !isSpace(doc[i]) {
				i++
			}
			if i == vs {
				return false
			}
		}
		if !fn(key, vs, i) {
			return false
		}
		for i < n && isSpace(doc[i]) {
			i++
		}
		if i < n && doc[i] == '}' {
			return true
		}
		if i >= n || doc[i] != ',' {
			return false
		}
		i++
		for i < n && isSpace(doc[i]) {
			i++
		}
	}
	return false
}

// stringEnd returns the index of the quote that closes the JSON string
// whose text starts at doc[start] (just after its opening quote), or -1
// when doc ends first. A quote is escaped when an odd run of backslashes
// precedes it.
func stringEnd(doc []byte, start int) int {
	// Short strings end before IndexByte's call would pay for itself.
	for i := start; i < len(doc) && i < start+shortString; i++ {
		switch doc[i] {
		case '"':
			return i
		case '\\':
			return stringEndFrom(doc, start, start)
		}
	}
	return stringEndFrom(doc, start, start+shortString)
}

// shortString is how many bytes the scanner compares inline before it
// hands a string to IndexByte.
const shortString = 16

// stringEndFrom is stringEnd searching from doc[from:].
func stringEndFrom(doc []byte, start, from int) int {
	if from > len(doc) {
		return -1
	}
	for i := from; ; {
		q := bytes.IndexByte(doc[i:], '"')
		if q < 0 {
			return -1
		}
		q += i
		bs := 0
		for j := q - 1; j >= start && doc[j] == '\\'; j-- {
			bs++
		}
		if bs%2 == 0 {
			return q
		}
		i = q + 1
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
