package sshconfig

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
)

// gCase is one comparison with `ssh -G`: the same files, the same command
// line, the same host.
type gCase struct {
	name  string
	files map[string]string // under the case's directory; "config" is given with -F
	args  []string          // ssh's flags before the destination: -o, -p, -l, -i, -L, -R, -D, -b, -4, -6
	dest  string            // [user@]host
	// home runs ssh with HOME set to the case's directory, where relative
	// Includes of a user file are looked for (~/.ssh/...); pinhole gets the
	// same Home. Identity files then must not use ~ (ssh takes ~ from the
	// password database, not HOME).
	home bool
}

var gCases = []gCase{
	{name: "alias", dest: "alias", files: map[string]string{"config": `
Host alias
  HostName %h.example.com
  Port 2200
  User carol
  LocalForward 8080 db:5432
  LocalForward [::1]:9090 [fe80::1]:80
  RemoteForward 9000 localhost:3000
  DynamicForward 1080
  ServerAliveInterval 10
  ServerAliveCountMax 5
  ConnectTimeout 1m5s
Host *
  User bob
  Port 1
`}},
	{name: "wildcards", dest: "db7.corp", files: map[string]string{"config": `
Host ?ab *.corp
  Port 2201
Host db?.corp
  User star
`}},
	{name: "wildcards question mark", dest: "tab", files: map[string]string{"config": "Host ?ab *.corp\n  Port 2201\n"}},
	{name: "negation excludes", dest: "bastion", files: map[string]string{"config": `
Host * !bastion
  ProxyJump bastion
Host *
  User everyone
`}},
	{name: "negation passes others", dest: "web1", files: map[string]string{"config": `
Host * !bastion
  ProxyJump jump@bastion:2222
`}},
	{name: "host is case-sensitive and commas are literal", dest: "a", files: map[string]string{"config": `
Host A a,b
  Port 7
Host a
  HostName Mixed.Example.COM
`}},
	{name: "key case, equals, quotes, comments", dest: "q", files: map[string]string{"config": `
# a comment
HOST=q
  hOsTnAmE=quoted.example
  PORT = 2202
	user	"dan"   # trailing comment
  IdentityFile "/tmp/with space/key"
  identityfile=/tmp/second\ key
  ServerAliveInterval=1h
`}},
	{name: "first value wins", dest: "web", files: map[string]string{"config": `
Host web
  Port 3001
  User first
Host *
  Port 3002
  User second
  HostName fallback.example
Host web
  HostName web.example
`}},
	{name: "command line wins", dest: "olduser@web", args: []string{"-o", "Port=4000", "-o", "user=cli", "-o", "HostName=cli.example", "-p", "4001"}, files: map[string]string{"config": `
Host web
  Port 3001
  User first
  HostName web.example
`}},
	{name: "-l beats user@ and config", dest: "ann@web", args: []string{"-l", "lee", "-p", "4002"}, files: map[string]string{"config": "Host web\n  User first\n  Port 9\n"}},
	{name: "user@ beats config", dest: "ann@web", files: map[string]string{"config": "Host web\n  User first\n"}},
	{name: "match host sees HostName", dest: "alias", files: map[string]string{"config": `
Host alias
  HostName real.EXAMPLE.org
Match host *.example.org
  Port 4400
Match originalhost alias
  User orig
Match host alias
  ConnectTimeout 9
`}},
	{name: "match user localuser all negation", dest: "svc@box", files: map[string]string{"config": `
Match user svc localuser LOCALUSER
  Port 4500
Match !user svc
  HostName wrong.example
Match user other,svc
  IdentitiesOnly yes
Match all
  ExitOnForwardFailure yes
Match !all
  GatewayPorts yes
Match user !svc,*
  ServerAliveCountMax 9
`}},
	{name: "include glob, inactive include, match inside include", dest: "inc", files: map[string]string{
		"config": `
Include DIR/conf.d/*.conf
Host other
  Include DIR/never.conf
Host inc
  Include DIR/inner.conf
  User after-include
Host *
  Port 5999
`,
		"conf.d/10-first.conf":  "Host inc\n  HostName first.example\n",
		"conf.d/20-second.conf": "Host inc\n  HostName second.example\n  Port 5100\n",
		"conf.d/skip.txt":       "Host inc\n  Port 1\n",
		"never.conf":            "Port 2\nUser never\n",
		"inner.conf":            "Match host nomatch\n  User inner-wrong\n",
	}},
	{name: "relative include under ~/.ssh", dest: "rel", home: true, files: map[string]string{
		"config":               "Include rel.d/*\nHost rel\n  Port 5300\n",
		".ssh/rel.d/a":         "Host rel\n  User from-home\n  Include more\n",
		".ssh/more":            "HostName more.example\n",
		".ssh/rel.d/b.missing": "",
	}},
	{name: "tokens", dest: "Tok", args: []string{"-l", "remote"}, files: map[string]string{"config": `
Host Tok
  HostName tok.%h.example
  Port 2222
  IdentityFile ~/.ssh/id_%h_%p_%r
  IdentityFile %d/keys/%u-%n-%l-%L-100%%
  IdentityFile /k/%i-%k
Host other Tok
  HostKeyAlias alias-%h
  IdentityFile /k2/%k
  UserKnownHostsFile ~/kh_%h %d/kh2_%p
  IdentityAgent ~/agent.%h.sock
`}},
	{name: "forwards accumulate, command line first", dest: "fw", args: []string{"-L", "7000:cli:70", "-R", "7001:localhost:71", "-D", "7002", "-L", "8080:db:5432"}, files: map[string]string{"config": `
Host fw
  LocalForward 8080 db:5432
  LocalForward *:8081 [2001:db8::1]:443
  LocalForward 127.0.0.1:8082 localhost:82
  RemoteForward 0.0.0.0:9000 127.0.0.1:3000
  RemoteForward [::]:9001 localhost:3001
  DynamicForward [::1]:1081
  DynamicForward 1082
Host *
  LocalForward 8083 everyone:83
  DynamicForward 1082
`}},
	{name: "host key and address settings", dest: "hk", args: []string{"-4"}, files: map[string]string{"config": `
Host hk
  StrictHostKeyChecking accept-new
  GatewayPorts yes
  BindAddress 127.0.0.2
  AddressFamily inet6
  IdentitiesOnly true
  IdentityAgent none
Host *
  StrictHostKeyChecking no
`}},
	{name: "strict yes, agent variable, -o family", dest: "hk2", args: []string{"-o", "AddressFamily=inet6", "-o", "StrictHostKeyChecking=true", "-b", "127.0.0.3"}, files: map[string]string{"config": `
Host hk2
  StrictHostKeyChecking off
  IdentityAgent $MY_AGENT
  UserKnownHostsFile none
`}},
	{name: "strict off", dest: "x", files: map[string]string{"config": "StrictHostKeyChecking off\nIdentityAgent SSH_AUTH_SOCK\n"}},
	{name: "proxyjump first", dest: "pj", files: map[string]string{"config": `
Host pj
  ProxyJump alice@hop1:2222,hop2
  ProxyCommand nc %h %p
`}},
	{name: "proxycommand first", dest: "pc", files: map[string]string{"config": `
Host pc
  ProxyCommand ssh -W "%h:%p" bastion # kept as written
  ProxyJump hop
`}},
	{name: "proxyjump none", dest: "pn", files: map[string]string{"config": "Host pn\n  ProxyJump none\nHost *\n  ProxyJump later\n"}},
	{name: "clear all forwardings", dest: "cf", args: []string{"-L", "1234:a:1"}, files: map[string]string{"config": "Host cf\n  LocalForward 1 b:2\n  ClearAllForwardings yes\n"}},
	{name: "ignored and IgnoreUnknown keys", dest: "ig", files: map[string]string{"config": `
IgnoreUnknown NotAnOption,Pinhole*
NotAnOption whatever
PinholeThing 1
Host ig
  Compression yes
  ForwardAgent no
  SendEnv LANG LC_*
  Ciphers aes128-ctr
  Port 6000
`}},
	{name: "negation alone never matches", dest: "web", files: map[string]string{"config": "Host !db\n  Port 7100\nHost !web\n  Port 7101\n"}},
	{name: "-o with a space, Match originalhost case", dest: "MiXed", args: []string{"-o", "Port 7200", "-o", "User  =  spaced"}, files: map[string]string{"config": `
Match originalhost mixed
  HostName lower.example
Match host MIXED
  ConnectTimeout 12
Host mixed
  Port 1
`}},
	{name: "include is relative to ~/.ssh even from -F, and ~/ works", dest: "t", home: true, files: map[string]string{
		"config":          "Include ~/.ssh/tilde.conf\n",
		".ssh/tilde.conf": "Host t\n  HostName tilde.example\n",
	}},
	{name: "connect timeout none then value", dest: "ct", files: map[string]string{"config": "Host ct\n  ConnectTimeout none\nHost *\n  ConnectTimeout 30\n  ServerAliveInterval 0\n"}},
}

// TestAgainstOpenSSH gives ssh -G and Resolve the same files, flags and
// host, and checks every key pinhole uses.
func TestAgainstOpenSSH(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	localHost, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range gCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range tc.files {
				text = strings.ReplaceAll(text, "DIR", dir)
				text = strings.ReplaceAll(text, "LOCALUSER", me.Username)
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			config := filepath.Join(dir, "config")
			home := me.HomeDir
			env := append(os.Environ(), "MY_AGENT=/tmp/agent.sock")
			if tc.home {
				home = dir
				env = append(env, "HOME="+dir)
			}
			args := append([]string{"-F", config, "-G"}, tc.args...)
			args = append(args, tc.dest)
			cmd := exec.Command(sshtest.SSHPath, args...)
			cmd.Env = env
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("ssh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
			}
			want := parseG(t, string(out))

			o := optionsFromSSHArgs(t, tc.args)
			o.ConfigFile = config
			o.Home = home
			o.LocalUser = me.Username
			o.LocalHostname = localHost
			o.UID = strconv.Itoa(os.Getuid())
			o.Getenv = func(k string) string {
				if k == "MY_AGENT" {
					return "/tmp/agent.sock"
				}
				return ""
			}
			host := tc.dest
			if i := strings.LastIndex(host, "@"); i >= 0 {
				o.DestinationUser = host[:i]
				host = host[i+1:]
			}
			got, err := Resolve(host, o)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			compareG(t, want, got, me)
			if !tc.home {
				compareIdentities(t, env, append(append([]string{"-F", config}, tc.args...), tc.dest), got)
			}
		})
	}
}

// parseG splits ssh -G's output into key → values (a key may repeat).
func parseG(t *testing.T, out string) map[string][]string {
	m := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, " ")
		if k != "" {
			m[k] = append(m[k], v)
		}
	}
	if len(m["hostname"]) != 1 {
		t.Fatalf("ssh -G printed no hostname:\n%s", out)
	}
	return m
}

func compareG(t *testing.T, g map[string][]string, s *Settings, me *user.User) {
	t.Helper()
	one := func(k string) string {
		if v := g[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	check := func(key string, want, got any) {
		t.Helper()
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: ssh -G says %v, pinhole %v", key, want, got)
		}
	}
	check("hostname", one("hostname"), s.HostName)
	port := int(s.Port)
	if port == 0 {
		port = 22
	}
	check("port", one("port"), strconv.Itoa(port))
	u := s.User
	if u == "" {
		u = me.Username
	}
	check("user", one("user"), u)
	ct := "none"
	if s.ConnectTimeout > 0 {
		ct = strconv.Itoa(int(s.ConnectTimeout / time.Second))
	}
	check("connecttimeout", one("connecttimeout"), ct)
	check("proxyjump", one("proxyjump"), s.ProxyJump)
	check("proxycommand", one("proxycommand"), s.ProxyCommand)
	check("identitiesonly", one("identitiesonly"), yesNo(s.IdentitiesOnly))
	check("identityagent", one("identityagent"), s.IdentityAgent)
	check("gatewayports", one("gatewayports"), yesNo(s.GatewayPorts))
	check("exitonforwardfailure", one("exitonforwardfailure"), yesNo(s.ExitOnForwardFailure))
	sai := int(s.ServerAliveInterval / time.Second)
	if sai < 0 {
		sai = 0
	}
	check("serveraliveinterval", one("serveraliveinterval"), strconv.Itoa(sai))
	sac := s.ServerAliveCountMax
	if sac == 0 {
		sac = 3
	}
	check("serveralivecountmax", one("serveralivecountmax"), strconv.Itoa(sac))
	strict := map[string]string{"true": "yes", "false": "no", "ask": "ask", "accept-new": "accept-new"}[one("stricthostkeychecking")]
	gotStrict := s.StrictHostKeyChecking
	if gotStrict == "" {
		gotStrict = "ask"
	}
	check("stricthostkeychecking", strict, gotStrict)
	known := strings.Fields(one("userknownhostsfile"))
	def := []string{filepath.Join(me.HomeDir, ".ssh/known_hosts"), filepath.Join(me.HomeDir, ".ssh/known_hosts2")}
	if reflect.DeepEqual(known, def) {
		known = nil
	}
	check("userknownhostsfile", known, s.UserKnownHostsFile)
	check("bindaddress", one("bindaddress"), s.BindAddress)
	fam := s.AddressFamily
	if fam == "" {
		fam = "any"
	}
	check("addressfamily", one("addressfamily"), fam)
	check("localforward", gForwards(t, spec.Local, g["localforward"]), s.Local)
	check("remoteforward", gForwards(t, spec.Remote, g["remoteforward"]), s.Remote)
	check("dynamicforward", gForwards(t, spec.Dynamic, g["dynamicforward"]), s.Dynamic)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// gForwards parses ssh -G's "localforward A B" values as pinhole's specs.
func gForwards(t *testing.T, k spec.Kind, lines []string) []spec.Forward {
	t.Helper()
	var fs []spec.Forward
	for _, l := range lines {
		// ssh -G brackets every target host; pinhole only IP literals.
		l = bracketed.ReplaceAllStringFunc(l, func(b string) string {
			if _, err := netip.ParseAddr(b[1 : len(b)-1]); err != nil {
				return b[1 : len(b)-1]
			}
			return b
		})
		f, err := spec.Parse(k, strings.Replace(l, " ", ":", 1))
		if err != nil {
			t.Fatalf("ssh -G forward %q: %v", l, err)
		}
		fs = append(fs, f)
	}
	return fs
}

var bracketed = regexp.MustCompile(`\[[^\]]*\]`)

var identityLine = regexp.MustCompile(`(?m)^debug1: identity file (.*) type -?\d+\r?$`)

// compareIdentities checks the expanded identity files: ssh -G prints
// them unexpanded, so ssh -v is run with a ProxyCommand that exits at once
// and its "identity file" lines read (defaults when none is configured).
func compareIdentities(t *testing.T, env, args []string, s *Settings) {
	t.Helper()
	full := append([]string{"-v", "-o", "ProxyCommand=true", "-o", "BatchMode=yes"}, args...)
	cmd := exec.Command(sshtest.SSHPath, full...)
	cmd.Env = env
	out, _ := cmd.CombinedOutput()
	var files []string
	for _, m := range identityLine.FindAllStringSubmatch(string(out), -1) {
		if !strings.HasSuffix(m[1], "-cert") {
			files = append(files, m[1])
		}
	}
	if len(files) == 0 {
		t.Fatalf("ssh -v printed no identity files:\n%s", out)
	}
	if len(s.IdentityFile) == 0 {
		for _, f := range files {
			if !strings.HasPrefix(filepath.Base(f), "id_") {
				t.Errorf("ssh uses identity %s, pinhole none (the defaults)", f)
			}
		}
		return
	}
	if !reflect.DeepEqual(files, s.IdentityFile) {
		t.Errorf("identity files: ssh uses %q, pinhole %q", files, s.IdentityFile)
	}
}

// optionsFromSSHArgs turns the test's ssh flags into Options.
func optionsFromSSHArgs(t *testing.T, args []string) Options {
	var o Options
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() string {
			i++
			return args[i]
		}
		switch a {
		case "-o":
			o.Overrides = append(o.Overrides, next())
		case "-p":
			o.Overrides = append(o.Overrides, "Port="+next())
		case "-l":
			o.Overrides = append(o.Overrides, "User="+next())
		case "-i":
			o.IdentityFiles = append(o.IdentityFiles, next())
		case "-b":
			o.BindAddress = next()
		case "-4":
			o.AddressFamily = "inet"
		case "-6":
			o.AddressFamily = "inet6"
		case "-L", "-R", "-D":
			k := map[string]spec.Kind{"-L": spec.Local, "-R": spec.Remote, "-D": spec.Dynamic}[a]
			f, err := spec.Parse(k, next())
			if err != nil {
				t.Fatal(err)
			}
			switch k {
			case spec.Local:
				o.Local = append(o.Local, f)
			case spec.Remote:
				o.Remote = append(o.Remote, f)
			default:
				o.Dynamic = append(o.Dynamic, f)
			}
		default:
			t.Fatalf("optionsFromSSHArgs: %s is not handled", a)
		}
	}
	return o
}
