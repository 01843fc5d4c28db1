package plugin

import (
	"encoding/json"
	"testing"
)

func TestJSONField(t *testing.T) {
	doc := []byte(` { "a" : 1, "site_id":"s-42", "nested": {"site_id": "no"}, "arr":[1,"]",{}], "esc\u0061": "x\"y", "t":true, "a_key_longer_than_sixteen":"a value longer than sixteen \" with a quote", "long\u005fkey_escaped_after_sixteen":2 } `)
	cases := []struct {
		name, raw string
		ok        bool
	}{
		{"a", "1", true},
		{"site_id", `"s-42"`, true},
		{"nested", `{"site_id": "no"}`, true},
		{"arr", `[1,"]",{}]`, true},
		{"esca", `"x\"y"`, true},
		{"t", "true", true},
		{"a_key_longer_than_sixteen", `"a value longer than sixteen \" with a quote"`, true},
		{"long_key_escaped_after_sixteen", "2", true},
		{"missing", "", false},
	}
	for _, c := range cases {
		raw, ok := JSONField(doc, c.name)
		if ok != c.ok || string(raw) != c.raw {
			t.Errorf("JSONField(%q) = %q, %v; want %q, %v", c.name, raw, ok, c.raw, c.ok)
		}
	}
	if s, ok := JSONString(doc, "site_id"); !ok || string(s) != "s-42" {
		t.Errorf("JSONString(site_id) = %q, %v", s, ok)
	}
	if s, ok := JSONString(doc, "esca"); !ok || string(s) != `x"y` {
		t.Errorf("JSONString(esca) = %q, %v", s, ok)
	}
	if _, ok := JSONString(doc, "a"); ok {
		t.Error("JSONString of a number succeeded")
	}
	for _, bad := range []string{``, `[]`, `{"a"}`, `{"a":}`, `{"a":"x`, `{}`, `{"b":1 "a":2}`} {
		if _, ok := JSONField([]byte(bad), "a"); ok {
			t.Errorf("JSONField(%q) found a member", bad)
		}
	}
	out, ok := JSONReplace([]byte(`{"card":"4111","n":1}`), "card", []byte(`"***"`))
	if !ok || string(out) != `{"card":"***","n":1}` {
		t.Errorf("JSONReplace = %q, %v", out, ok)
	}
}

// FuzzJSONField checks the scanner against encoding/json: whenever it
// finds a member of a valid object, encoding/json agrees on its value.
func FuzzJSONField(f *testing.F) {
	f.Add([]byte(`{"level":"debug","x":[1,{"level":2}]}`), "level")
	f.Add([]byte(`{"a":{"b":"}"},"level":null}`), "level")
	f.Add([]byte(`{"k\"ey":"v\\","msg":"a \"quoted\" \\\" run","level":"x"}`), "level")
	f.Add([]byte(`{"k\"ey":"v\\","msg":"a \"quoted\" \\\" run","level":"x"}`), `k"ey`)
	f.Fuzz(func(t *testing.T, doc []byte, name string) {
		raw, ok := JSONField(doc, name)
		var m map[string]json.RawMessage
		if json.Unmarshal(doc, &m) != nil {
			return
		}
		want, has := m[name]
		if !ok {
			return // the scanner may give up on duplicates or odd keys; it never lies
		}
		if !has {
			t.Fatalf("found %q in %q, encoding/json does not", name, doc)
		}
		_ = want // with duplicate keys encoding/json keeps the last, the scanner the first
		if !json.Valid(raw) {
			t.Fatalf("member %q: raw %q is not valid JSON", name, raw)
		}
	})
}
