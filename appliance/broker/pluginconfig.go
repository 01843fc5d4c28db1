package broker

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eddybroker/eddy/plugins/host"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// pluginRef names a registered module: the digest decides, the name is the
// operator's label for it.
type pluginRef struct {
	name   string
	digest host.Digest
}

func (r pluginRef) String() string {
	if r.name == "" {
		return r.digest.String()
	}
	return r.name + "@" + r.digest.String()
}

// stageBinding is the configuration of one plugin stage of a topic.
type stageBinding struct {
	refs    []pluginRef // nil: the stage has no plugin
	config  []byte
	onError string
	timeout time.Duration
	memory  uint64
	trusted bool
}

// topicPlugins are a topic's plugin bindings, as its configs say.
type topicPlugins struct {
	partitioner, produce, cleanup stageBinding
	allowUnshipped, dryRun        bool
}

func (tp topicPlugins) any() bool {
	return tp.partitioner.refs != nil || tp.produce.refs != nil || tp.cleanup.refs != nil
}

// validPluginName: 1-64 of [A-Za-z0-9._-].
func validPluginName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("plugin name %q: 1 to 64 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("plugin name %q has %q; only letters, digits, '.', '_' and '-' are allowed", name, c)
		}
	}
	return nil
}

// parsePluginRef reads "name@sha256:<hex>" or "sha256:<hex>".
func parsePluginRef(s string) (pluginRef, error) {
	s = strings.TrimSpace(s)
	var r pluginRef
	d := s
	if name, digest, ok := strings.Cut(s, "@"); ok {
		if err := validPluginName(name); err != nil {
			return r, err
		}
		r.name, d = name, digest
	}
	digest, err := host.ParseDigest(d)
	if err != nil {
		return r, fmt.Errorf("%q: want name@sha256:<hex> or sha256:<hex> (eddy plugin list shows them): %w", s, err)
	}
	r.digest = digest
	return r, nil
}

// pluginStages are the stages a topic binds plugins to, with the config
// that names them and the on.error policies each accepts (the first is
// the default).
var pluginStages = []struct {
	stage    string
	key      string
	multi    bool // a comma-separated chain
	onErrors []string
	bind     func(c *topicConfig) *stageBinding
}{
	{"partitioner", "plugin.partitioner", false, []string{"reject", "fallback"}, func(c *topicConfig) *stageBinding { return &c.plugins.partitioner }},
	{"produce", "plugin.produce.transforms", true, []string{"reject", "bypass"}, func(c *topicConfig) *stageBinding { return &c.plugins.produce }},
	{"cleanup", "plugin.cleanup", false, nil, func(c *topicConfig) *stageBinding { return &c.plugins.cleanup }},
}

// maxChain bounds a transform chain.
const maxChain = 8

// pluginConfigDefs are the topic configs that bind plugins.
var pluginConfigDefs = func() []configDef {
	var defs []configDef
	for _, st := range pluginStages {
		defs = append(defs, configDef{st.key, kmsg.ConfigTypeString, "the " + st.stage + " plugin(s), name@sha256:<digest>", func(v string, c *topicConfig) error {
			b := st.bind(c)
			b.refs = nil
			if strings.TrimSpace(v) == "" {
				return nil
			}
			parts := strings.Split(v, ",")
			if !st.multi && len(parts) > 1 {
				return fmt.Errorf("%q: one plugin, not a list", v)
			}
			if len(parts) > maxChain {
				return fmt.Errorf("%d plugins: a chain holds at most %d", len(parts), maxChain)
			}
			for _, part := range parts {
				r, err := parsePluginRef(part)
				if err != nil {
					return err
				}
				b.refs = append(b.refs, r)
			}
			return nil
		}})
		defs = append(defs, configDef{"plugin." + st.stage + ".config", kmsg.ConfigTypeString, "bytes handed to the " + st.stage + " plugin's eddy_init", func(v string, c *topicConfig) error {
			st.bind(c).config = []byte(v)
			return nil
		}})
		if st.onErrors != nil {
			defs = append(defs, configDef{"plugin." + st.stage + ".on.error", kmsg.ConfigTypeString, "what a failing " + st.stage + " plugin does: " + strings.Join(st.onErrors, " or "), func(v string, c *topicConfig) error {
				for _, ok := range st.onErrors {
					if v == ok {
						st.bind(c).onError = v
						return nil
					}
				}
				return fmt.Errorf("%q: want %s", v, strings.Join(st.onErrors, " or "))
			}})
		}
		defs = append(defs,
			configDef{"plugin." + st.stage + ".timeout.ms", kmsg.ConfigTypeLong, "deadline of one " + st.stage + " plugin call", func(v string, c *topicConfig) error {
				n, err := parseLong(v, 1)
				if err == nil && n > 60_000 {
					err = fmt.Errorf("%d is above 60000", n)
				}
				st.bind(c).timeout = time.Duration(n) * time.Millisecond
				return err
			}},
			configDef{"plugin." + st.stage + ".memory.max.bytes", kmsg.ConfigTypeLong, "memory cap of each " + st.stage + " plugin instance", func(v string, c *topicConfig) error {
				n, err := parseLong(v, 64<<10)
				if err == nil && n > 4<<30 {
					err = fmt.Errorf("%d is above 4 GiB", n)
				}
				st.bind(c).memory = uint64(n)
				return err
			}},
			configDef{"plugin." + st.stage + ".trusted", kmsg.ConfigTypeBoolean, "true runs the " + st.stage + " plugin without termination checks (a runaway call is never stopped)", func(v string, c *topicConfig) error {
				t, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("%q: want true or false", v)
				}
				st.bind(c).trusted = t
				return nil
			}},
		)
	}
	defs = append(defs,
		configDef{"plugin.cleanup.allow.unshipped", kmsg.ConfigTypeBoolean, "true lets the cleanup plugin remove data federation has not shipped yet", func(v string, c *topicConfig) error {
			t, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q: want true or false", v)
			}
			c.plugins.allowUnshipped = t
			return nil
		}},
		configDef{"plugin.cleanup.dry.run", kmsg.ConfigTypeBoolean, "true runs the cleanup plugin and logs what it would remove, removing nothing", func(v string, c *topicConfig) error {
			t, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q: want true or false", v)
			}
			c.plugins.dryRun = t
			return nil
		}},
	)
	return defs
}()

// onError returns a stage's on.error policy, the default when unset.
func (b stageBinding) onErrorOr(def string) string {
	if b.onError == "" {
		return def
	}
	return b.onError
}
