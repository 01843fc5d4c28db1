package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// LoadOptions says where Load finds each layer above the built-in defaults.
type LoadOptions struct {
	// File is the configuration file. Empty means the file named by
	// EDDY_CONFIG in Env, and no file if that is unset or empty.
	File string
	// Env is the environment as os.Environ returns it ("NAME=value").
	// EDDY_<SECTION>_<KEY> variables and the aliases EDDY_DATA_DIR,
	// EDDY_KAFKA_ADDR, EDDY_QUIC_ADDR and EDDY_ADMIN_ADDR set keys; other
	// variables are ignored.
	Env []string
	// Flags maps dotted keys to values given on the command line.
	Flags map[string]string
	// IOProfile is the io-profile file, in the same TOML layout as the
	// configuration file, written by the disk probe; empty means none.
	IOProfile string
}

// EnvConfigFile is the environment variable naming the configuration file.
const EnvConfigFile = "EDDY_CONFIG"

// envAliases are short variable names scripts use for common keys. The full
// EDDY_<SECTION>_<KEY> name wins when both are set.
var envAliases = map[string]string{
	"EDDY_DATA_DIR":   "node.data_dir",
	"EDDY_KAFKA_ADDR": "listeners.kafka.addr",
	"EDDY_QUIC_ADDR":  "listeners.quic.addr",
	"EDDY_ADMIN_ADDR": "admin.addr",
}

// builtin is the configuration of the embedded default.toml.
var builtin = sync.OnceValues(func() (*Config, error) {
	c := &Config{}
	if errs := c.decodeTOML(defaultTOML, BuiltIn, "default.toml"); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var errs []error
	for _, l := range schema {
		if _, ok := c.sources[l.key]; !ok {
			errs = append(errs, &KeyError{Key: l.key, Origin: "default.toml", Err: errors.New("missing")})
			continue
		}
		c.origins[l.key] = BuiltIn.String()
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
})

// Default returns the built-in configuration of the embedded default.toml,
// every key sourced BuiltIn. It panics only if that file is broken, which
// the package's tests rule out.
func Default() *Config {
	c, err := builtin()
	if err != nil {
		panic("config: embedded default.toml is broken: " + err.Error())
	}
	return c.Clone()
}

// Load builds the configuration from the built-in defaults, the io-profile,
// the file, the environment and the flags, in rising precedence, and
// validates it. All problems found are returned together, each naming its
// key and where the value came from; on error the Config is nil.
func Load(opts LoadOptions) (*Config, error) {
	c := Default()
	var errs []error
	if opts.IOProfile != "" {
		errs = append(errs, c.loadFile(opts.IOProfile, IOProfile, "io-profile")...)
	}
	env := parseEnv(opts.Env)
	file := opts.File
	if file == "" {
		file = env[EnvConfigFile]
	}
	if file != "" {
		errs = append(errs, c.loadFile(file, File, "file")...)
	}
	errs = append(errs, c.applyEnv(env)...)
	errs = append(errs, c.applyFlags(opts.Flags)...)

	// A key whose value was rejected keeps its earlier value; do not
	// report rules about it again.
	bad := make(map[string]bool)
	for _, err := range errs {
		if ke, ok := err.(*KeyError); ok {
			bad[ke.Key] = true
		}
	}
	for _, ke := range c.problems() {
		if !bad[ke.Key] {
			errs = append(errs, ke)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// loadFile applies the TOML file at path as layer src.
func (c *Config) loadFile(path string, src Source, what string) []error {
	data, err := os.ReadFile(path)
	if err != nil {
		return []error{fmt.Errorf("read config %s: %w", what, err)}
	}
	return c.decodeTOML(data, src, what+" "+path)
}

// decodeTOML applies TOML data as layer src; origin names it in errors
// ("file /etc/eddy/eddy.toml"). Every problem is reported, not the first.
func (c *Config) decodeTOML(data []byte, src Source, origin string) []error {
	var raw map[string]any
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return []error{fmt.Errorf("%s: line %d, column %d: %s", origin, pe.Position.Line, pe.Position.Col, pe.Message)}
		}
		return []error{fmt.Errorf("%s: %w", origin, err)}
	}

	// Unknown keys. Every key in the file is checked by its exact name:
	// MetaData.Undecoded would miss keys that differ only in case, because
	// the decoder matches struct fields case-insensitively.
	var errs []error
	reported := make(map[string]bool)
	for _, k := range md.Keys() {
		if coveredBy(k, reported) {
			continue
		}
		key := k.String() // quotes a name holding a dot, so it matches no key
		typ := md.Type(k...)
		var problem error
		switch {
		case schemaByKey[key] != nil:
			continue // a table here is reported with the value below
		case isSection(key) && typ == "Hash":
			continue
		case isSection(key):
			problem = fmt.Errorf("is a section: expected a table, found %s", describeTOML(lookupRaw(raw, k)))
		case typ == "Hash" || typ == "ArrayHash":
			problem = errors.New("unknown section")
		default:
			_, problem = lookup(key)
		}
		reported[key] = true
		errs = append(errs, &KeyError{Key: key, Origin: origin, Err: problem})
	}

	for _, l := range schema {
		v := lookupRaw(raw, l.parts)
		if v == nil {
			continue
		}
		s, err := l.fromTOML(v)
		if err == nil {
			err = c.set(l.key, s, src, origin)
		} else {
			err = &KeyError{Key: l.key, Origin: origin, Err: err}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// lookupRaw returns the decoded value at path, or nil.
func lookupRaw(raw map[string]any, path []string) any {
	var v any = raw
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// coveredBy reports whether a key sits under a key already reported, or
// under a known key (a table where a value belongs, which fromTOML
// reports).
func coveredBy(k toml.Key, reported map[string]bool) bool {
	for n := 1; n < len(k); n++ {
		p := k[:n].String()
		if reported[p] || schemaByKey[p] != nil {
			return true
		}
	}
	return false
}

// fromTOML turns a decoded TOML value into the string form Set takes, or
// explains why the TOML type is wrong for the key.
func (l *leaf) fromTOML(raw any) (string, error) {
	switch v := raw.(type) {
	case string:
		switch {
		case l.kind == kindString, l.kind == kindDuration, l.kind == kindSize:
			return v, nil
		case l.auto && v == Auto:
			return v, nil
		}
	case int64:
		switch l.kind {
		case kindInt, kindSize:
			return strconv.FormatInt(v, 10), nil
		case kindDuration:
			if v == -1 {
				return "-1", nil
			}
			return "", fmt.Errorf("%d has no unit; write a string with one, e.g. \"%ds\" or \"%dms\"", v, v, v)
		}
	case bool:
		if l.kind == kindBool || l.kind == kindString && slices.Contains(l.enum, "true") {
			return strconv.FormatBool(v), nil
		}
	case []any:
		if l.kind != kindStrings {
			break
		}
		list := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("expected an array of strings, found an element %s", describeTOML(e))
			}
			if strings.Contains(s, ",") || strings.TrimSpace(s) == "" {
				return "", fmt.Errorf("entry %q is empty or holds a comma", s)
			}
			list = append(list, s)
		}
		return strings.Join(list, ","), nil
	}
	return "", fmt.Errorf("expected %s, found %s", l.expected(), describeTOML(raw))
}

// expected describes the TOML values a key takes.
func (l *leaf) expected() string {
	switch l.kind {
	case kindBool:
		return "true or false"
	case kindInt:
		return "an integer"
	case kindDuration:
		return `a duration string such as "10s"`
	case kindSize:
		return `a size such as "1MiB" or an integer`
	case kindStrings:
		return "an array of strings"
	}
	if slices.Contains(l.enum, "true") {
		return "a string or a boolean"
	}
	return "a string"
}

// describeTOML names a decoded TOML value's type, with the value if short.
func describeTOML(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// parseEnv maps variable names to values; a later duplicate wins.
func parseEnv(environ []string) map[string]string {
	env := make(map[string]string)
	for _, kv := range environ {
		if name, value, ok := strings.Cut(kv, "="); ok {
			env[name] = value
		}
	}
	return env
}

// applyEnv sets the keys named by EDDY_* variables: the aliases first, so
// that the full names override them.
func (c *Config) applyEnv(env map[string]string) []error {
	var errs []error
	aliases := make([]string, 0, len(envAliases))
	for name := range envAliases {
		aliases = append(aliases, name)
	}
	slices.Sort(aliases)
	for _, name := range aliases {
		key := envAliases[name]
		if value, ok := env[name]; ok && EnvKey(key) != name {
			if err := c.set(key, value, Env, "env "+name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, l := range schema {
		name := EnvKey(l.key)
		if value, ok := env[name]; ok {
			if err := c.set(l.key, value, Env, "env "+name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// applyFlags sets the keys given as flags, in file order, then reports the
// unknown ones.
func (c *Config) applyFlags(flags map[string]string) []error {
	var errs []error
	for _, l := range schema {
		if value, ok := flags[l.key]; ok {
			if err := c.set(l.key, value, Flag, Flag.String()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	var unknown []string
	for key := range flags {
		if schemaByKey[key] == nil {
			unknown = append(unknown, key)
		}
	}
	slices.Sort(unknown)
	for _, key := range unknown {
		errs = append(errs, c.set(key, flags[key], Flag, Flag.String()))
	}
	return errs
}
