package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// kind is how a leaf's value is parsed and printed.
type kind int

const (
	kindString kind = iota
	kindBool
	kindInt
	kindDuration
	kindSize
	kindStrings
)

// leaf is one settable key of the schema, read from the Config struct's
// fields and tags.
type leaf struct {
	key      string   // "listeners.quic.idle_timeout"
	parts    []string // ["listeners", "quic", "idle_timeout"]
	index    []int    // field path from Config
	kind     kind
	bits     int // of an integer kind
	enum     []string
	min, max *int64
	forever  bool   // -1 is allowed
	addr     string // "listen" or "advertise"
	required bool
	hot      bool
	auto     bool // "auto" keeps the value of the layers below
}

// schema is every leaf in struct (and so file) order.
var schema, schemaByKey = buildSchema()

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
	stringsType  = reflect.TypeFor[[]string]()
)

func buildSchema() ([]*leaf, map[string]*leaf) {
	var leaves []*leaf
	walkStruct(reflect.TypeFor[Config](), nil, nil, &leaves)
	byKey := make(map[string]*leaf, len(leaves))
	for _, l := range leaves {
		byKey[l.key] = l
	}
	return leaves, byKey
}

// walkStruct appends the leaves of struct type t. A malformed field is a
// programming error in this package, so it panics at start-up (and in
// every test).
func walkStruct(t reflect.Type, parts []string, index []int, out *[]*leaf) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Tag.Get("toml")
		if name == "" || strings.ContainsAny(name, ". ,") {
			panic(fmt.Sprintf("config: field %s.%s needs a plain toml tag", t.Name(), f.Name))
		}
		p := append(slices.Clone(parts), name)
		idx := append(slices.Clone(index), i)
		if f.Type.Kind() == reflect.Struct {
			walkStruct(f.Type, p, idx, out)
			continue
		}
		l := &leaf{key: strings.Join(p, "."), parts: p, index: idx}
		switch {
		case f.Type == durationType:
			l.kind = kindDuration
		case f.Type == sizeType:
			l.kind = kindSize
		case f.Type == stringsType:
			l.kind = kindStrings
		case f.Type.Kind() == reflect.String:
			l.kind = kindString
		case f.Type.Kind() == reflect.Bool:
			l.kind = kindBool
		case f.Type.Kind() >= reflect.Int && f.Type.Kind() <= reflect.Int64:
			l.kind = kindInt
			l.bits = f.Type.Bits()
		default:
			panic(fmt.Sprintf("config: key %s has unsupported type %s", l.key, f.Type))
		}
		if e := f.Tag.Get("enum"); e != "" {
			l.enum = strings.Split(e, "|")
		}
		l.min = l.bound(f.Tag.Get("min"))
		l.max = l.bound(f.Tag.Get("max"))
		if l.min == nil && (l.kind == kindDuration || l.kind == kindSize) {
			zero := int64(0)
			l.min = &zero
		}
		l.forever = f.Tag.Get("forever") == "true"
		l.addr = f.Tag.Get("addr")
		l.required = f.Tag.Get("required") == "true"
		l.hot = f.Tag.Get("reload") == "hot"
		l.auto = f.Tag.Get("auto") == "true"
		*out = append(*out, l)
	}
}

// bound parses a min or max tag in the leaf's own unit.
func (l *leaf) bound(tag string) *int64 {
	if tag == "" {
		return nil
	}
	var n int64
	var err error
	switch l.kind {
	case kindDuration:
		var d Duration
		d, err = ParseDuration(tag)
		n = int64(d)
	case kindSize:
		var s Size
		s, err = ParseSize(tag)
		n = int64(s)
	default:
		n, err = strconv.ParseInt(tag, 10, 64)
	}
	if err != nil {
		panic(fmt.Sprintf("config: key %s has a bad bound %q: %v", l.key, tag, err))
	}
	return &n
}

// field returns the leaf's field in c.
func (l *leaf) field(c *Config) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(l.index)
}

// parse turns s into a value of the leaf's type. It checks the syntax
// only; check applies the key's rules.
func (l *leaf) parse(s string) (reflect.Value, error) {
	switch l.kind {
	case kindDuration:
		d, err := ParseDuration(s)
		return reflect.ValueOf(d), err
	case kindSize:
		n, err := ParseSize(s)
		return reflect.ValueOf(n), err
	case kindStrings:
		var list []string
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				list = append(list, e)
			}
		}
		return reflect.ValueOf(list), nil
	case kindBool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return reflect.Value{}, fmt.Errorf("%q is not true or false", s)
		}
		return reflect.ValueOf(b), nil
	case kindInt:
		t := reflect.TypeOf(Config{}).FieldByIndex(l.index).Type
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, l.bits)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return reflect.Value{}, fmt.Errorf("%s is out of range for a %d-bit integer", s, l.bits)
			}
			return reflect.Value{}, fmt.Errorf("%q is not an integer", s)
		}
		v := reflect.New(t).Elem()
		v.SetInt(n)
		return v, nil
	}
	return reflect.ValueOf(s), nil
}

// format returns v (a value of the leaf's type) in canonical form.
func (l *leaf) format(v reflect.Value) string {
	switch l.kind {
	case kindDuration:
		return Duration(v.Int()).String()
	case kindSize:
		return Size(v.Int()).String()
	case kindStrings:
		return strings.Join(v.Interface().([]string), ",")
	case kindBool:
		return strconv.FormatBool(v.Bool())
	case kindInt:
		return strconv.FormatInt(v.Int(), 10)
	}
	return v.String()
}

// formatInt prints a bound or number in the leaf's unit.
func (l *leaf) formatInt(n int64) string {
	switch l.kind {
	case kindDuration:
		return Duration(n).String()
	case kindSize:
		return Size(n).String()
	}
	return strconv.FormatInt(n, 10)
}

// check applies the key's own rules (enum, bounds, host:port) to v.
func (l *leaf) check(v reflect.Value) error {
	switch l.kind {
	case kindString:
		s := v.String()
		if s == "" && (l.required || l.enum != nil) {
			if l.enum != nil {
				return fmt.Errorf("must be one of %s", strings.Join(l.enum, ", "))
			}
			return errors.New("must not be empty")
		}
		if l.enum != nil && !slices.Contains(l.enum, s) {
			return fmt.Errorf("%q is not one of %s", s, strings.Join(l.enum, ", "))
		}
		if l.addr != "" && s != "" {
			return checkAddr(s, l.addr == "advertise")
		}
	case kindStrings:
		for _, e := range v.Interface().([]string) {
			if strings.TrimSpace(e) == "" {
				return errors.New("has an empty entry")
			}
		}
	case kindInt, kindDuration, kindSize:
		return l.checkNumber(v.Int())
	}
	return nil
}

func (l *leaf) checkNumber(n int64) error {
	if n == -1 && l.forever {
		return nil
	}
	unlimited := "forever"
	if l.kind == kindSize {
		unlimited = "no limit"
	}
	if n == -1 && l.kind != kindInt {
		return fmt.Errorf("-1 (%s) is not allowed for this key", unlimited)
	}
	if l.min != nil && n < *l.min {
		want := "at least " + l.formatInt(*l.min)
		switch *l.min {
		case 0:
			want = "zero or more"
		case 1:
			want = "positive"
		}
		if l.forever {
			want = "-1 (" + unlimited + ") or " + want
		}
		return fmt.Errorf("%s must be %s", l.formatInt(n), want)
	}
	if l.max != nil && n > *l.max {
		return fmt.Errorf("%s is above the maximum %s", l.formatInt(n), l.formatInt(*l.max))
	}
	return nil
}

// lookup returns the leaf for key, or an error suggesting a near key.
func lookup(key string) (*leaf, error) {
	if l, ok := schemaByKey[key]; ok {
		return l, nil
	}
	if isSection(key) {
		return nil, errors.New("is a section, not a key")
	}
	if s := suggest(key); s != "" {
		return nil, fmt.Errorf("unknown key; did you mean %s?", s)
	}
	return nil, errors.New("unknown key")
}

// isSection reports whether name is a section (a prefix of some keys).
func isSection(name string) bool {
	for _, l := range schema {
		if strings.HasPrefix(l.key, name+".") {
			return true
		}
	}
	return false
}

// suggest returns the known key closest to an unknown one: the same key
// name in another section, or a key within two edits.
func suggest(key string) string {
	name := key[strings.LastIndexByte(key, '.')+1:]
	best, bestDist := "", 3
	for _, l := range schema {
		if l.parts[len(l.parts)-1] == name {
			return l.key
		}
		if d := editDistance(key, l.key); d < bestDist {
			best, bestDist = l.key, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Set sets the leaf key from its string form, as Get prints it, and records
// src as its source. Lists are comma-separated. The value must parse and
// satisfy the key's own rules (allowed values, bounds, host:port); rules
// between keys are left to Validate. On error c is unchanged.
func (c *Config) Set(key, value string, src Source) error {
	return c.set(key, value, src, src.String())
}

func (c *Config) set(key, value string, src Source, origin string) error {
	l, err := lookup(key)
	if err != nil {
		return &KeyError{Key: key, Origin: origin, Err: err}
	}
	if l.auto && value == Auto {
		return nil // the io-profile's value, or the built-in one, stays
	}
	v, err := l.parse(value)
	if err == nil {
		err = l.check(v)
	}
	if err != nil {
		return &KeyError{Key: key, Origin: origin, Err: err}
	}
	f := l.field(c)
	f.Set(v.Convert(f.Type()))
	c.record(key, src, origin)
	return nil
}

// Get returns key's value in canonical string form ("7d", "1GiB", lists
// comma-separated), and false for an unknown key.
func (c *Config) Get(key string) (string, bool) {
	l, ok := schemaByKey[key]
	if !ok {
		return "", false
	}
	return l.format(l.field(c)), true
}

// Keys returns every leaf key in file order.
func (c *Config) Keys() []string {
	keys := make([]string, len(schema))
	for i, l := range schema {
		keys[i] = l.key
	}
	return keys
}

// Reloadable reports whether a running node applies a new value of key on
// SIGHUP (flush.*, logging.*, topics.auto_create,
// log.retention_check_interval). Other keys need a restart.
func Reloadable(key string) bool {
	l, ok := schemaByKey[key]
	return ok && l.hot
}

// Diff returns the keys whose values differ between old and new, in file
// order. A nil config counts as Default().
func Diff(old, new *Config) (changed []string) {
	if old == nil {
		old = Default()
	}
	if new == nil {
		new = Default()
	}
	for _, l := range schema {
		if l.format(l.field(old)) != l.format(l.field(new)) {
			changed = append(changed, l.key)
		}
	}
	return changed
}

// KeyError is one problem with one key. Load and Validate return these
// joined with errors.Join.
type KeyError struct {
	Key    string // the dotted key, e.g. "flush.max_delay"
	Origin string // where the value came from, e.g. "env EDDY_FLUSH_MAX_DELAY"; may be empty
	Err    error
}

// Error returns "key: problem (origin)".
func (e *KeyError) Error() string {
	if e.Origin == "" || e.Origin == BuiltIn.String() {
		return e.Key + ": " + e.Err.Error()
	}
	return e.Key + ": " + e.Err.Error() + " (" + e.Origin + ")"
}

// Unwrap returns the underlying problem.
func (e *KeyError) Unwrap() error { return e.Err }
