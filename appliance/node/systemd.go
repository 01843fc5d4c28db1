package node

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier speaks systemd's notify protocol (sd_notify) when the service
// manager asked for it (NOTIFY_SOCKET): STATUS lines and, while starting,
// EXTEND_TIMEOUT_USEC so a long recovery is not killed; READY=1 once the
// node serves; WATCHDOG=1 while its loops make progress; STOPPING=1 on the
// way out. Without NOTIFY_SOCKET every method does nothing.
type Notifier struct {
	log      *slog.Logger
	enabled  bool
	watchdog time.Duration // WATCHDOG_USEC; 0: no watchdog

	mu       sync.Mutex
	starting bool
	stop     chan struct{}
	done     chan struct{}
}

// extendBy is how much each progress line during start-up extends
// systemd's start timeout.
const extendBy = 30 * time.Second

// NewNotifier reads NOTIFY_SOCKET and WATCHDOG_USEC from the environment.
func NewNotifier(log *slog.Logger) *Notifier {
	s := &Notifier{log: log, starting: true}
	if log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// A probe message tells whether a socket is there to listen.
	ok, err := daemon.SdNotify(false, "STATUS=starting")
	if err != nil {
		s.log.Warn("systemd notification socket unusable", "err", err)
	}
	s.enabled = ok
	if ok {
		if d, err := daemon.SdWatchdogEnabled(false); err == nil {
			s.watchdog = d
		}
	}
	return s
}

func (s *Notifier) send(state string) {
	if !s.enabled {
		return
	}
	if _, err := daemon.SdNotify(false, state); err != nil {
		s.log.Debug("sd_notify failed", "state", state, "err", err)
	}
}

// Status sends a STATUS line; during start-up it also extends the start
// timeout, so recovery of a large data directory keeps the service alive.
func (s *Notifier) Status(msg string) {
	s.mu.Lock()
	starting := s.starting
	s.mu.Unlock()
	state := "STATUS=" + msg
	if starting {
		state += fmt.Sprintf("\nEXTEND_TIMEOUT_USEC=%d", extendBy.Microseconds())
	}
	s.send(state)
}

// Ready sends READY=1 with a status line, and starts the watchdog pings:
// every WATCHDOG_USEC/3, WATCHDOG=1 is sent only if live returns nil for
// a stall limit of WATCHDOG_USEC/2, so a stuck node is restarted.
func (s *Notifier) Ready(status string, live func(limit time.Duration) error) {
	s.mu.Lock()
	s.starting = false
	s.mu.Unlock()
	s.send("READY=1\nSTATUS=" + status)
	if !s.enabled || s.watchdog <= 0 || live == nil {
		return
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.watchdog / 3)
		defer t.Stop()
		stalled := false
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			if err := live(s.watchdog / 2); err != nil {
				if !stalled {
					s.log.Error("not pinging the watchdog: the node is stuck", "err", err)
					s.send("STATUS=stuck: " + err.Error())
				}
				stalled = true
				continue
			}
			if stalled {
				s.log.Info("the node makes progress again; watchdog pings resume")
				stalled = false
			}
			s.send("WATCHDOG=1")
		}
	}()
}

// Stopping sends STOPPING=1 and stops the watchdog pings.
func (s *Notifier) Stopping(status string) {
	s.send("STOPPING=1\nSTATUS=" + status)
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
	}
}
