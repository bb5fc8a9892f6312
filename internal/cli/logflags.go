package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// logSettings are --log-format and --log-level: how e.log writes. The
// flags' Set makes e.log again at once, so the logger a subcommand reads
// after its parse is the one the flags asked for.
type logSettings struct {
	e      *env
	json   bool
	level  slog.Level
	format string // as given, for String
}

// logFlags registers --log-format and --log-level on fs. Every
// long-running subcommand (server, connect, up, forward, proxy, map)
// calls it before its parse.
func logFlags(fs *flag.FlagSet, e *env) {
	s := &logSettings{e: e, level: slog.LevelInfo, format: "text"}
	fs.Func("log-format", "how log lines on stderr are written: `text` (key=value, docs/logging.md) or json (one JSON object a line, the same keys)", func(v string) error {
		switch strings.ToLower(v) {
		case "text":
			s.json = false
		case "json":
			s.json = true
		default:
			return fmt.Errorf("%q: want text or json", v)
		}
		s.format = strings.ToLower(v)
		s.apply()
		return nil
	})
	fs.Func("log-level", "the least important log lines written: debug, `info` (the default), warn or error", func(v string) error {
		l, err := parseLevel(v)
		if err != nil {
			return err
		}
		s.level = l
		s.apply()
		return nil
	})
}

// processFlag reports whether the flag called name is about the process
// (its logs, its metrics) rather than a setting of what it serves: such a
// flag may go with server -c FILE, and is read at start only.
func processFlag(name string) bool {
	switch name {
	case "log-format", "log-level", "metrics", "metrics-token", "metrics-token-file", "allow-open-metrics":
		return true
	}
	return false
}

func parseLevel(v string) (slog.Level, error) {
	switch strings.ToLower(v) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q: want debug, info, warn or error", v)
}

func (s *logSettings) apply() {
	s.e.logJSON = s.json
	s.e.log = newLogger(s.e.stderr, s.json, s.level)
}

// newLogger is the process's logger on w: slog's text handler, or its
// JSON handler, at level and above.
func newLogger(w io.Writer, json bool, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if json {
		opts.ReplaceAttr = durationText
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// durationText writes a time.Duration as the text handler does ("10s",
// "1.5ms") instead of JSON's nanoseconds, so that a value reads the same
// in both formats.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
