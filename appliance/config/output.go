package config

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"text/tabwriter"
	"unicode/utf8"
)

// docs maps each key to the comment line above it in default.toml.
var docs = sync.OnceValue(func() map[string]string {
	m := make(map[string]string)
	section, comment := "", ""
	sc := bufio.NewScanner(bytes.NewReader(defaultTOML))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			comment = ""
		case strings.HasPrefix(line, "#"):
			comment = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[] ")
			comment = ""
		default:
			if name, _, ok := strings.Cut(line, "="); ok {
				m[section+"."+strings.TrimSpace(name)] = comment
			}
			comment = ""
		}
	}
	return m
})

// Doc returns the one-line description of key from default.toml, or "".
func Doc(key string) string { return docs()[key] }

// Explain writes one line per key of section (or every key for ""):
// the key, its value, where the value came from, whether a reload applies
// it, and its description. section may also be a sub-section such as
// "listeners.quic" or a single key.
func (c *Config) Explain(w io.Writer, section string) error {
	var leaves []*leaf
	for _, l := range schema {
		if section == "" || l.key == section || strings.HasPrefix(l.key, section+".") {
			leaves = append(leaves, l)
		}
	}
	if len(leaves) == 0 {
		return fmt.Errorf("explain: unknown section %q (sections: %s)", section, strings.Join(sections(), ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE\tAPPLIED\tDESCRIPTION")
	for _, l := range leaves {
		applied := "on restart"
		if l.hot {
			applied = "on reload"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.key, l.tomlValue(l.field(c)), c.origin(l.key), applied, Doc(l.key))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	return nil
}

// sections returns the top-level sections in file order.
func sections() []string {
	var out []string
	for _, l := range schema {
		if len(out) == 0 || out[len(out)-1] != l.parts[0] {
			out = append(out, l.parts[0])
		}
	}
	return out
}

// WriteTOML writes the effective configuration as a TOML file that Load
// reads back to the same values; each value carries a "# from <source>"
// comment.
func (c *Config) WriteTOML(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# Effective Eddy configuration; each value says where it came from.")
	var tw *tabwriter.Writer
	table := ""
	for _, l := range schema {
		if t := strings.Join(l.parts[:len(l.parts)-1], "."); t != table {
			if tw != nil {
				tw.Flush()
			}
			table = t
			fmt.Fprintf(bw, "\n[%s]\n", table)
			tw = tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		}
		fmt.Fprintf(tw, "%s = %s\t# from %s\n", l.parts[len(l.parts)-1], l.tomlValue(l.field(c)), c.origin(l.key))
	}
	if tw != nil {
		tw.Flush()
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// tomlValue returns v as a TOML value that decodes back to v for this key.
func (l *leaf) tomlValue(v reflect.Value) string {
	switch l.kind {
	case kindBool, kindInt:
		return l.format(v)
	case kindSize:
		if n := v.Int(); n <= 0 {
			return l.format(v)
		}
	case kindStrings:
		list := v.Interface().([]string)
		q := make([]string, len(list))
		for i, s := range list {
			q[i] = quoteTOML(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return quoteTOML(l.format(v))
}

// quoteTOML returns s as a TOML basic string.
func quoteTOML(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f || r == utf8.RuneError:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
