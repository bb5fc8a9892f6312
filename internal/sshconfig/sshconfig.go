// Package sshconfig reads OpenSSH's client configuration (ssh_config(5))
// the way ssh(1) does and resolves one host to typed Settings.
//
// The sources are read in ssh's order, and the first value of a key wins:
// the command line (Options: -p, -l, -i, -L, -R, -D, -b, -4/-6, then each
// -o in order), then the user's file (~/.ssh/config, or the one -F names),
// then the system's (/etc/ssh/ssh_config; not read with -F). IdentityFile,
// UserKnownHostsFile's list, LocalForward, RemoteForward and DynamicForward
// accumulate instead, command line first, as in ssh. Host and Match
// (host, originalhost, user, localuser, all, with '!') select the blocks
// that apply; Include reads more files (globs; a relative path is under
// ~/.ssh for user files, /etc/ssh for system files).
//
// Keys pinhole does not use are accepted and listed in Settings.Ignored;
// a keyword OpenSSH does not know is an error as it is to ssh, unless
// IgnoreUnknown names it. Errors name the file and line and say what to
// write. The reference is ssh itself: sshconfig_test.go compares every
// key pinhole uses with what `ssh -G` prints for the same files.
//
// The package reads files and nothing else: no environment (Options
// carries the home directory, the user and an optional Getenv).
package sshconfig

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
)

// Options are what Resolve reads besides the files: where the files are,
// who runs it, and what the command line already said.
type Options struct {
	// ConfigFile is ssh's -F: "" reads UserFile then SystemFile, "none"
	// reads no file, anything else reads that file alone (as a user file).
	ConfigFile string
	// UserFile and SystemFile are the defaults' paths: "" means
	// Home/.ssh/config and /etc/ssh/ssh_config.
	UserFile, SystemFile string

	// Home is the home directory of the user running pinhole: ~, %d, the
	// default user file and relative Includes of user files. Required.
	Home string
	// LocalUser is the name of the user running pinhole: %u, Match
	// localuser, and the default User. Required.
	LocalUser string
	// UID is %i, the numeric user id; "" leaves %i unusable.
	UID string
	// LocalHostname is %l (and %L, up to its first dot). "" leaves %l
	// and %L unusable.
	LocalHostname string
	// Getenv looks up ${NAME} in IdentityFile, IdentityAgent and
	// UserKnownHostsFile. nil: every variable is unset.
	Getenv func(string) string

	// The command line, which comes before every file. Port 0 and ""
	// mean not given. Port (-p) and User (-l) come before Overrides here;
	// ssh takes whichever of -p and -o Port comes first, so a caller that
	// keeps that order passes -p as "Port=N" in Overrides instead (and -l
	// as "User=NAME"). BindAddress (-b) and AddressFamily (-4, -6) win
	// over -o, as in ssh. DestinationUser is the user of user@host, which
	// -l and -o User come before.
	User            string
	DestinationUser string
	Port            uint16
	BindAddress     string // -b
	AddressFamily   string // "inet" for -4, "inet6" for -6
	IdentityFiles   []string
	Local, Remote   []spec.Forward
	Dynamic         []spec.Forward
	// Overrides are the -o Key=Value arguments, in order.
	Overrides []string
}

// Settings are a host's resolved configuration. A zero value means the
// key was not set anywhere; the caller applies its default.
type Settings struct {
	// Host is the host as given (%n).
	Host string
	// HostName is the name or address to connect to: HostName with %h
	// expanded, or the host as given, lowercased as ssh does. Never "".
	HostName string
	// Port 0: not set (22).
	Port uint16
	// User "": not set (the local user).
	User string
	// ConnectTimeout 0: not set ("none").
	ConnectTimeout time.Duration
	// ProxyJump and ProxyCommand as written ("none" is left out: "").
	// Only one is set: whichever came first, as in ssh.
	ProxyJump, ProxyCommand string

	// IdentityFile is the identity files, command line first, with ~,
	// %-tokens and ${VAR} expanded. Empty: not set (the defaults).
	IdentityFile   []string
	IdentitiesOnly bool
	// IdentityAgent "": not set ($SSH_AUTH_SOCK). "none": no agent.
	// "SSH_AUTH_SOCK" or "$NAME": that environment variable. Else a path,
	// expanded.
	IdentityAgent string

	Local, Remote, Dynamic []spec.Forward
	GatewayPorts           bool
	ExitOnForwardFailure   bool

	// ServerAliveInterval 0: not set; negative: set to 0 (no keepalives).
	ServerAliveInterval time.Duration
	// ServerAliveCountMax 0: not set (3).
	ServerAliveCountMax int

	// StrictHostKeyChecking is "yes", "accept-new", "no" or "ask"
	// (ssh's synonyms true, false and off folded in); "": not set.
	StrictHostKeyChecking string
	// UserKnownHostsFile, expanded; empty: not set. ["none"]: none.
	UserKnownHostsFile []string

	BindAddress string
	// AddressFamily "any", "inet" or "inet6"; "": not set.
	AddressFamily string

	// Ignored lists the keys that applied to this host and that pinhole
	// does not use, as "FILE:LINE: Key value".
	Ignored []string
	// Warnings are what was skipped: Match criteria pinhole cannot
	// evaluate (exec, canonical, final, localnetwork, tagged), whose
	// blocks are then not applied.
	Warnings []string
}

// maxIncludeDepth is OpenSSH's READCONF_MAX_DEPTH.
const maxIncludeDepth = 16

// maxFileSize bounds one config file; no real one comes near it.
const maxFileSize = 4 << 20

// Error is a problem in a config file or a -o argument.
type Error struct {
	File string // "-o" for a command-line option
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.File == "-o" {
		return "sshconfig: -o: " + e.Msg
	}
	return fmt.Sprintf("sshconfig: %s:%d: %s", e.File, e.Line, e.Msg)
}

// ErrBadPermissions is wrapped by the error for a user file that others
// may write, which ssh refuses too.
var ErrBadPermissions = errors.New("bad owner or permissions")

// state is one resolution in progress.
type state struct {
	o            Options
	host         string
	s            Settings
	set          map[string]bool // keys that have their (first) value
	idents       []string        // raw, expanded at the end
	known        []string
	ignored      []string // IgnoreUnknown's patterns
	hostNameRaw  string
	hostKeyAlias string // for %k
	clearFwd     bool
}

// source is where a line comes from.
type source struct {
	file   string
	line   int
	user   bool // a user file: ~/.ssh for relative Includes, ~ allowed
	never  bool // an Include from an inactive block: parse only
	cmd    bool // a -o argument
	depth  int
	active *bool
}

func (src *source) errorf(format string, args ...any) error {
	if src.cmd {
		return &Error{File: "-o", Msg: fmt.Sprintf(format, args...)}
	}
	return &Error{File: src.file, Line: src.line, Msg: fmt.Sprintf(format, args...)}
}

// Resolve reads the configuration for host (as given on the command line,
// without user@) and returns its settings.
func Resolve(host string, o Options) (*Settings, error) {
	if o.Home == "" || o.LocalUser == "" {
		return nil, errors.New("sshconfig: Options.Home and Options.LocalUser are required")
	}
	if host == "" {
		return nil, errors.New("sshconfig: no host to resolve")
	}
	st := &state{o: o, host: host, set: map[string]bool{}}
	st.s.Host = host
	if err := st.commandLine(); err != nil {
		return nil, err
	}
	switch o.ConfigFile {
	case "none":
	case "":
		user := o.UserFile
		if user == "" {
			user = filepath.Join(o.Home, ".ssh", "config")
		}
		if err := st.readFile(user, true, true, false, 0, nil); err != nil {
			return nil, err
		}
		system := o.SystemFile
		if system == "" {
			system = "/etc/ssh/ssh_config"
		}
		if err := st.readFile(system, false, false, false, 0, nil); err != nil {
			return nil, err
		}
	default:
		if err := st.readFile(o.ConfigFile, true, false, false, 0, nil); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("sshconfig: -F %s: no such file; check the path, or pass -F none to read no config file", o.ConfigFile)
			}
			return nil, err
		}
	}
	return st.finish()
}

// commandLine applies what the command line gave, before any file.
func (st *state) commandLine() error {
	o := st.o
	if o.Port != 0 {
		st.s.Port = o.Port
		st.set["port"] = true
	}
	if o.User != "" {
		st.s.User = o.User
		st.set["user"] = true
	}
	if o.BindAddress != "" {
		st.s.BindAddress = o.BindAddress
		st.set["bindaddress"] = true
	}
	if o.AddressFamily != "" {
		st.s.AddressFamily = o.AddressFamily
		st.set["addressfamily"] = true
	}
	for _, f := range o.IdentityFiles {
		st.addIdentity(f)
	}
	for _, f := range o.Local {
		st.addForward(&st.s.Local, f)
	}
	for _, f := range o.Remote {
		st.addForward(&st.s.Remote, f)
	}
	for _, f := range o.Dynamic {
		st.addForward(&st.s.Dynamic, f)
	}
	active := true
	for _, line := range o.Overrides {
		src := &source{file: "-o", cmd: true, active: &active, user: true}
		kw, _ := splitKeyword(line)
		if kw == "" {
			return src.errorf("%q is not a setting; write -o Key=Value, e.g. -o Port=2222", line)
		}
		switch strings.ToLower(kw) {
		case "host", "match", "include":
			return src.errorf("%s cannot be given with -o; put it in a config file and pass -F FILE", kw)
		}
		if err := st.line(src, line); err != nil {
			return err
		}
	}
	if o.DestinationUser != "" && !st.set["user"] {
		st.s.User = o.DestinationUser
		st.set["user"] = true
	}
	return nil
}

// readFile reads one file. checkPerm refuses a file others may write, as
// ssh does for ~/.ssh/config; a missing file is no error unless it was
// named with -F (mustExist), which the caller reports.
func (st *state) readFile(path string, user, checkPerm, never bool, depth int, active *bool) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && (depth > 0 || path != st.o.ConfigFile) {
			return nil
		}
		return fmt.Errorf("sshconfig: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("sshconfig: %w", err)
	}
	if fi.IsDir() {
		return fmt.Errorf("sshconfig: %s is a directory; name a config file", path)
	}
	if checkPerm {
		if err := checkPermissions(path, fi); err != nil {
			return err
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("sshconfig: %w", err)
	}
	if len(data) > maxFileSize {
		return fmt.Errorf("sshconfig: %s is larger than %d bytes; that is not an ssh_config file", path, maxFileSize)
	}
	if active == nil {
		a := true
		active = &a
	}
	return st.parse(path, string(data), user, never, depth, active)
}

// Parse checks the syntax of one config file's text as read for host,
// without Include (the fuzz target's entry point, and what a test can
// call on bytes alone). It returns the settings that text gives host.
func Parse(name, text, host string) (*Settings, error) {
	st := &state{o: Options{Home: "/nonexistent", LocalUser: "nobody"}, host: host, set: map[string]bool{}}
	st.s.Host = host
	active := true
	if err := st.parse(name, text, true, false, maxIncludeDepth, &active); err != nil {
		return nil, err
	}
	return st.finish()
}

func (st *state) parse(path, text string, user, never bool, depth int, active *bool) error {
	for i, line := range strings.Split(text, "\n") {
		src := &source{file: path, line: i + 1, user: user, never: never, depth: depth, active: active}
		if err := st.line(src, line); err != nil {
			return err
		}
	}
	return nil
}

// line processes one line, as readconf.c's process_config_line.
func (st *state) line(src *source, line string) error {
	if strings.IndexByte(line, 0) >= 0 {
		return src.errorf("a NUL byte; this is not a text file")
	}
	kw, rest := splitKeyword(line)
	if kw == "" {
		return nil
	}
	key := strings.ToLower(kw)
	if rest == "" {
		return src.errorf("no value after %s; write e.g. %s", kw, example(key))
	}
	if key == "match" {
		return st.match(src, rest)
	}
	if key == "proxycommand" {
		// The rest of the line as written, quotes and all, as ssh keeps it.
		if *src.active && !st.set["proxycommand"] && !st.set["proxyjump"] {
			st.set["proxycommand"] = true
			if rest != "none" {
				st.s.ProxyCommand = rest
			}
		}
		return nil
	}
	args, err := splitArgs(rest)
	if err != nil {
		return src.errorf("%s: %v; close it, or escape a literal quote with a backslash", kw, err)
	}
	if len(args) == 0 {
		return src.errorf("no value after %s; write e.g. %s", kw, example(key))
	}
	if !openSSHKeywords[key] {
		if matchList(key, strings.Join(st.ignored, ","), true) == 1 {
			return nil
		}
		hint := ""
		if near := nearest(key); near != "" {
			hint = fmt.Sprintf("did you mean %s? ", near)
		}
		return src.errorf("unknown keyword %s (ssh refuses it too); %sfix the spelling, or list it in an IgnoreUnknown line above it", kw, hint)
	}
	apply, ok := keys[key]
	if !ok {
		if key == "ignoreunknown" {
			if *src.active && !st.set[key] {
				st.set[key] = true
				st.ignored = args
			}
			return nil
		}
		if *src.active && !src.never {
			st.s.Ignored = append(st.s.Ignored, fmt.Sprintf("%s: %s %s", src.where(), kw, strings.Join(args, " ")))
		}
		return nil
	}
	return apply(st, src, kw, args)
}

func (src *source) where() string {
	if src.cmd {
		return "-o"
	}
	return src.file + ":" + strconv.Itoa(src.line)
}

// take reports whether key's value is to be stored now: the block is
// active and no earlier source set it. It marks the key set.
func (st *state) take(src *source, key string) bool {
	if !*src.active || src.never || st.set[key] {
		return false
	}
	st.set[key] = true
	return true
}

// host processes a Host line: it applies when one of the patterns
// matches the host as given (case-sensitively, as ssh) and no negated
// one does. A comma is part of a pattern here, as in ssh.
func (st *state) hostLine(src *source, args []string) error {
	if src.cmd {
		return src.errorf("Host cannot be given with -o")
	}
	*src.active = false
	for _, a := range args {
		if a == "" {
			return src.errorf("Host has an empty pattern; write e.g. Host myserver, or Host * for every host")
		}
		if src.never {
			return nil
		}
		neg := strings.HasPrefix(a, "!")
		if neg {
			a = a[1:]
		}
		if matchPattern(st.host, a) {
			if neg {
				*src.active = false
				return nil
			}
			*src.active = true
		}
	}
	return nil
}

// match processes a Match line, as readconf.c's match_cfg_line.
func (st *state) match(src *source, rest string) error {
	ruser := st.s.User
	if ruser == "" {
		ruser = st.o.LocalUser
	}
	host := st.host
	if st.hostNameRaw != "" {
		host = expandHostName(st.hostNameRaw, st.host)
	}
	result := true
	attributes := 0
	sawAll := false
	unsupported := ""
	cp := rest
	for {
		attr, r, ok := nextWord(cp)
		if !ok {
			return src.errorf("Match: a quote is not closed")
		}
		cp = r
		if attr == "" || attr[0] == '#' {
			break
		}
		neg := attr[0] == '!'
		name := strings.ToLower(strings.TrimPrefix(attr, "!"))
		if name == "all" {
			next, _, _ := nextWord(cp)
			if attributes > 1 || (next != "" && next[0] != '#') {
				return src.errorf("Match all cannot be combined with other criteria; write Match all alone, or drop it")
			}
			if result {
				result = !neg
			}
			sawAll = true
			break
		}
		attributes++
		if name == "canonical" || name == "final" {
			unsupported = name
			result = false
			continue
		}
		arg, r, ok := nextWord(cp)
		if !ok {
			return src.errorf("Match: a quote is not closed")
		}
		cp = r
		if arg == "" || arg[0] == '#' {
			return src.errorf("Match %s needs a value; write e.g. Match %s %s", name, name, matchExample(name))
		}
		var m bool
		switch name {
		case "host":
			m = matchHostList(host, arg)
		case "originalhost":
			m = matchHostList(st.host, arg)
		case "user":
			m = matchList(ruser, arg, false) == 1
		case "localuser":
			m = matchList(st.o.LocalUser, arg, false) == 1
		case "exec", "localnetwork", "tagged", "command", "sessiontype", "version":
			unsupported = name
			m = neg // the block does not apply
		default:
			return src.errorf("Match %s is not a criterion ssh knows; use host, originalhost, user, localuser, exec or all", name)
		}
		if m == neg {
			result = false
		}
	}
	if attributes == 0 && !sawAll {
		return src.errorf("Match needs a criterion; write e.g. Match host *.example.com or Match all")
	}
	if unsupported != "" && !src.never {
		st.s.Warnings = append(st.s.Warnings, fmt.Sprintf("%s: Match %s is not supported by pinhole; the block below it was skipped", src.where(), unsupported))
		result = false
	}
	*src.active = result && !src.never
	return nil
}

func matchExample(name string) string {
	switch name {
	case "user", "localuser":
		return "alice"
	}
	return "*.example.com"
}

// include processes an Include line.
func (st *state) include(src *source, args []string) error {
	if src.cmd {
		return src.errorf("Include cannot be given with -o")
	}
	for _, a := range args {
		if strings.HasPrefix(a, "~") && !src.user {
			return src.errorf("Include %s: ~ is not allowed in the system config file; write an absolute path", a)
		}
		p := a
		switch {
		case strings.HasPrefix(a, "~/"):
			p = filepath.Join(st.o.Home, a[2:])
		case a == "~":
			p = st.o.Home
		case strings.HasPrefix(a, "~"):
			return src.errorf("Include %s: only ~/ (your own home) is supported; write an absolute path", a)
		case !filepath.IsAbs(a) && src.user:
			p = filepath.Join(st.o.Home, ".ssh", a)
		case !filepath.IsAbs(a):
			p = filepath.Join("/etc/ssh", a)
		}
		if src.depth+1 > maxIncludeDepth {
			return src.errorf("Include %s: includes nest deeper than %d; is a file including itself?", a, maxIncludeDepth)
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return src.errorf("Include %s: bad pattern (%v); check the brackets", a, err)
		}
		outer := *src.active
		for _, m := range matches {
			never := src.never || !outer
			if err := st.readFile(m, src.user, true, never, src.depth+1, src.active); err != nil {
				return err
			}
			// A Match in the included file does not change this file's block.
			*src.active = outer
		}
	}
	return nil
}

// finish expands what depends on the final values and returns Settings.
func (st *state) finish() (*Settings, error) {
	s := &st.s
	if st.hostNameRaw != "" {
		s.HostName = strings.ToLower(expandHostName(st.hostNameRaw, st.host))
	} else {
		s.HostName = strings.ToLower(st.host)
	}
	if st.clearFwd {
		s.Local, s.Remote, s.Dynamic = nil, nil, nil
	}
	t := st.tokens()
	for _, f := range st.idents {
		p, err := t.expandPath(f, true)
		if err != nil {
			return nil, fmt.Errorf("sshconfig: IdentityFile %s: %w", f, err)
		}
		s.IdentityFile = append(s.IdentityFile, p)
	}
	for _, f := range st.known {
		if strings.EqualFold(f, "none") {
			s.UserKnownHostsFile = append(s.UserKnownHostsFile, "none")
			continue
		}
		p, err := t.expandPath(f, true)
		if err != nil {
			return nil, fmt.Errorf("sshconfig: UserKnownHostsFile %s: %w", f, err)
		}
		s.UserKnownHostsFile = append(s.UserKnownHostsFile, p)
	}
	switch a := s.IdentityAgent; {
	case a == "", a == "none", a == "SSH_AUTH_SOCK", strings.HasPrefix(a, "$") && !strings.HasPrefix(a, "${"):
	default:
		p, err := t.expandPath(a, true)
		if err != nil {
			return nil, fmt.Errorf("sshconfig: IdentityAgent %s: %w", a, err)
		}
		s.IdentityAgent = p
	}
	return s, nil
}

func (st *state) addIdentity(f string) {
	for _, have := range st.idents {
		if have == f {
			return
		}
	}
	st.idents = append(st.idents, f)
}

func (st *state) addForward(list *[]spec.Forward, f spec.Forward) {
	for _, have := range *list {
		if have == f {
			return
		}
	}
	*list = append(*list, f)
}

// expandHostName is ssh's expansion of HostName: %h is the host as
// given, %% a percent sign.
func expandHostName(raw, host string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '%' && i+1 < len(raw) {
			switch raw[i+1] {
			case 'h':
				b.WriteString(host)
				i++
				continue
			case '%':
				b.WriteByte('%')
				i++
				continue
			}
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}
