package telemetry

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/grafana/pyroscope-go"
)

// ProfilingConfig configures continuous profiling. The zero value is off.
type ProfilingConfig struct {
	// Enabled turns profiling on; ServerAddress is then required.
	Enabled bool
	// ServerAddress is the Pyroscope server, e.g. "https://pyro.example:4040".
	// The environment variable PYROSCOPE_ADHOC_SERVER_ADDRESS, when set,
	// overrides it (pyroscope-go's own rule).
	ServerAddress string
	// ApplicationName is the service name profiles are filed under;
	// empty means "eddy".
	ApplicationName string
	// Tags are static labels on every profile: site, version, slot
	// (the firmware A/B slot), node. Empty values are left out.
	Tags map[string]string
	// ProfileTypes names the profiles taken: cpu, alloc_objects,
	// alloc_space, inuse_objects, inuse_space, goroutines, mutex_count,
	// mutex_duration, block_count, block_duration. Empty means
	// DefaultProfileTypes.
	ProfileTypes []string
	// UploadRate is how often profiles are uploaded; 0 means 60s, kind to
	// metered links.
	UploadRate time.Duration
	// DisableGCRuns stops the profiler forcing a GC before a heap
	// snapshot when none ran in the interval; recommended on small hosts.
	DisableGCRuns bool
	// MutexProfileFraction and BlockProfileRate are set on the runtime
	// while profiling when mutex or block profiles are asked for; 0 means 5.
	MutexProfileFraction int
	BlockProfileRate     int
	// BasicAuthUser, BasicAuthPassword, TenantID and HTTPHeaders
	// authenticate to the server.
	BasicAuthUser     string
	BasicAuthPassword string
	TenantID          string
	HTTPHeaders       map[string]string
	// HTTPClient uploads the profiles, e.g. with the node's mTLS identity;
	// nil means pyroscope-go's default client.
	HTTPClient *http.Client
	// Logger receives the profiler's messages; nil discards them.
	Logger *slog.Logger
}

// DefaultProfileTypes are the profiles taken when none are configured:
// CPU and the two heap views that answer "what holds memory" and "what
// allocates".
var DefaultProfileTypes = []string{"cpu", "inuse_space", "alloc_space"}

// profileTypes maps configuration names to pyroscope-go's types.
var profileTypes = map[string]pyroscope.ProfileType{
	"cpu":            pyroscope.ProfileCPU,
	"alloc_objects":  pyroscope.ProfileAllocObjects,
	"alloc_space":    pyroscope.ProfileAllocSpace,
	"inuse_objects":  pyroscope.ProfileInuseObjects,
	"inuse_space":    pyroscope.ProfileInuseSpace,
	"goroutines":     pyroscope.ProfileGoroutines,
	"mutex_count":    pyroscope.ProfileMutexCount,
	"mutex_duration": pyroscope.ProfileMutexDuration,
	"block_count":    pyroscope.ProfileBlockCount,
	"block_duration": pyroscope.ProfileBlockDuration,
}

// ProfileTypeNames lists the accepted profile type names, sorted.
func ProfileTypeNames() []string { return slices.Sorted(maps.Keys(profileTypes)) }

// Validate reports every problem with cfg at once.
func (cfg ProfilingConfig) Validate() error {
	if !cfg.Enabled {
		return nil
	}
	var errs []error
	if strings.TrimSpace(cfg.ServerAddress) == "" {
		errs = append(errs, errors.New("profiling: enabled without a server address"))
	}
	if cfg.UploadRate < 0 {
		errs = append(errs, fmt.Errorf("profiling: upload rate %s is negative", cfg.UploadRate))
	}
	for _, t := range cfg.ProfileTypes {
		if _, ok := profileTypes[t]; !ok {
			errs = append(errs, fmt.Errorf("profiling: unknown profile type %q (want one of %s)", t, strings.Join(ProfileTypeNames(), ", ")))
		}
	}
	for k := range cfg.Tags {
		if !validTagName(k) {
			errs = append(errs, fmt.Errorf("profiling: tag name %q: use letters, digits, '_' and '.', not starting with a digit", k))
		}
	}
	return errors.Join(errs...)
}

// validTagName follows Pyroscope's label-name rule.
func validTagName(k string) bool {
	if k == "" || strings.HasPrefix(k, "__") {
		return false
	}
	for i, r := range k {
		switch {
		case r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Start starts continuous profiling as cfg says and returns the function
// that stops it, uploading what was collected since the last upload. With
// profiling off it does nothing and returns a no-op stop. Uploads are best
// effort: while the server is unreachable, profiles are dropped, never
// buffered.
func Start(cfg ProfilingConfig) (stop func(), err error) {
	if !cfg.Enabled {
		return func() {}, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	names := cfg.ProfileTypes
	if len(names) == 0 {
		names = DefaultProfileTypes
	}
	types := make([]pyroscope.ProfileType, 0, len(names))
	mutex, block := false, false
	for _, n := range names {
		types = append(types, profileTypes[n])
		mutex = mutex || strings.HasPrefix(n, "mutex_")
		block = block || strings.HasPrefix(n, "block_")
	}
	tags := make(map[string]string, len(cfg.Tags))
	for k, v := range cfg.Tags {
		if v != "" {
			tags[k] = v
		}
	}
	app := cfg.ApplicationName
	if app == "" {
		app = "eddy"
	}
	rate := cfg.UploadRate
	if rate == 0 {
		rate = 60 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pc := pyroscope.Config{
		ApplicationName:   app,
		Tags:              tags,
		ServerAddress:     cfg.ServerAddress,
		BasicAuthUser:     cfg.BasicAuthUser,
		BasicAuthPassword: cfg.BasicAuthPassword,
		TenantID:          cfg.TenantID,
		UploadRate:        rate,
		Logger:            pyroLogger{log.With("component", "profiling")},
		ProfileTypes:      types,
		DisableGCRuns:     cfg.DisableGCRuns,
		HTTPHeaders:       cfg.HTTPHeaders,
	}
	if cfg.HTTPClient != nil {
		pc.HTTPClient = cfg.HTTPClient
	}
	if mutex {
		runtime.SetMutexProfileFraction(orDefault(cfg.MutexProfileFraction, 5))
	}
	if block {
		runtime.SetBlockProfileRate(orDefault(cfg.BlockProfileRate, 5))
	}
	p, err := pyroscope.Start(pc)
	if err != nil {
		resetRates(mutex, block)
		return nil, fmt.Errorf("start profiling to %s: %w", cfg.ServerAddress, err)
	}
	return func() {
		if err := p.Stop(); err != nil {
			log.Warn("stop profiling", "err", err)
		}
		resetRates(mutex, block)
	}, nil
}

func resetRates(mutex, block bool) {
	if mutex {
		runtime.SetMutexProfileFraction(0)
	}
	if block {
		runtime.SetBlockProfileRate(0)
	}
}

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// pyroLogger adapts a *slog.Logger to pyroscope-go's Logger. Upload
// failures are warnings: profiling is best effort.
type pyroLogger struct{ log *slog.Logger }

func (l pyroLogger) Infof(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }

func (l pyroLogger) Debugf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }

func (l pyroLogger) Errorf(format string, args ...any) { l.log.Warn(fmt.Sprintf(format, args...)) }
