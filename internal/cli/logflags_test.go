package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogFlagsBad: a format or level pinhole does not know is a usage
// error that names the choices.
func TestLogFlagsBad(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy", "--log-format", "yaml"}, "want text or json"},
		{[]string{"server", "--log-level", "loud"}, "want debug, info, warn or error"},
		{[]string{"up", "--log-level", ""}, "want debug, info, warn or error"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestLogFormatJSON: with --log-format json every stderr line is one JSON
// object with time, level and msg, durations written as text; --log-level
// warn leaves out the info lines.
func TestLogFormatJSON(t *testing.T) {
	dir := t.TempDir()
	server := func(level string) *proc {
		p := start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "hk"), "--authorized-keys", filepath.Join(dir, "ak"),
			"--log-format", "json", "--log-level", level)
		p.waitLine(t, `host key`)
		return p
	}
	// Each logs "shutting down" (info, with drain=10s) as it stops.
	logs, quiet := server("info").stopAndRead(t), server("warn").stopAndRead(t)
	if !strings.Contains(logs, `"drain":"10s"`) {
		t.Errorf(`no "drain":"10s" (a duration as text) in:\n%s`, logs)
	}
	var lines int
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // stdout's lines
		}
		lines++
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Errorf("no %q in %q", k, line)
			}
		}
	}
	if lines == 0 {
		t.Fatalf("no JSON log line from pinhole server at info level:\n%s", logs)
	}
	if strings.Contains(quiet, `"level":"INFO"`) {
		t.Errorf("--log-level warn wrote info lines:\n%s", quiet)
	}
}
