package sandbox

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// LogLine is one line a plugin logged (eddy_v1.log), wrote to stdout or
// stderr, or that the host logged about it.
type LogLine struct {
	Time     time.Time
	Level    slog.Level
	Source   string // "plugin", "stdout", "stderr" or "host"
	Instance string
	Text     string
}

// logSink is a module's log: a token bucket (LogLinesPerSecond, with a
// burst of as many) in front of a ring of recent lines and the engine's
// logger.
type logSink struct {
	digest Digest
	logger *slog.Logger
	now    func() time.Time
	rate   float64

	mu struct {
		sync.Mutex
		tokens  float64
		last    time.Time
		ring    []LogLine
		next    int
		full    bool
		dropped uint64
	}
}

func newLogSink(cfg Config, d Digest) *logSink {
	s := &logSink{digest: d, logger: cfg.Logger, now: cfg.Now, rate: float64(cfg.LogLinesPerSecond)}
	s.mu.tokens = s.rate
	s.mu.ring = make([]LogLine, cfg.LogHistory)
	return s
}

// add records a line unless the module is over its rate.
func (s *logSink) add(level slog.Level, source, inst, text string) {
	now := s.now()
	s.mu.Lock()
	if !s.mu.last.IsZero() {
		s.mu.tokens = min(s.rate, s.mu.tokens+now.Sub(s.mu.last).Seconds()*s.rate)
	}
	s.mu.last = now
	if s.mu.tokens < 1 {
		s.mu.dropped++
		s.mu.Unlock()
		return
	}
	s.mu.tokens--
	s.mu.ring[s.mu.next] = LogLine{Time: now, Level: level, Source: source, Instance: inst, Text: text}
	s.mu.next = (s.mu.next + 1) % len(s.mu.ring)
	if s.mu.next == 0 {
		s.mu.full = true
	}
	s.mu.Unlock()
	s.logger.Log(context.Background(), level, text, "plugin", s.digest.String(), "source", source, "instance", inst)
}

func (s *logSink) recent() []LogLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.mu.full {
		return append([]LogLine(nil), s.mu.ring[:s.mu.next]...)
	}
	return append(append([]LogLine(nil), s.mu.ring[s.mu.next:]...), s.mu.ring[:s.mu.next]...)
}

func (s *logSink) dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.dropped
}
