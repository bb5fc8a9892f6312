package bench

import (
	"os"
	"slices"
	"strings"
	"testing"
)

const statusSample = `Name:	sshd
Umask:	0022
State:	S (sleeping)
Tgid:	4242
Ngid:	0
Pid:	4242
PPid:	4200
TracerPid:	0
VmPeak:	   15880 kB
VmSize:	   15852 kB
VmHWM:	    9120 kB
VmRSS:	    8964 kB
RssAnon:	     996 kB
Threads:	1
`

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procStatus
		wantErr string
	}{
		{"sshd", statusSample, procStatus{PPid: 4200, VmRSSkB: 8964}, ""},
		{"kernel thread", "Name:\tkthreadd\nPid:\t2\nPPid:\t0\nThreads:\t1\n", procStatus{PPid: 0}, ""},
		{"no newline at end", "PPid:\t1\nVmRSS:\t12 kB", procStatus{PPid: 1, VmRSSkB: 12}, ""},
		{"no PPid", "Name:\tx\nVmRSS:\t12 kB\n", procStatus{}, "no PPid"},
		{"bad PPid", "PPid:\tone\n", procStatus{}, "PPid"},
		{"negative PPid", "PPid:\t-1\n", procStatus{}, "PPid"},
		{"VmRSS in MB", "PPid:\t1\nVmRSS:\t12 MB\n", procStatus{}, "VmRSS"},
		{"VmRSS no number", "PPid:\t1\nVmRSS:\t kB\n", procStatus{}, "VmRSS"},
		{"empty", "", procStatus{}, "no PPid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseStatus = %+v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseStatus = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(statusSample))
	f.Add([]byte("PPid:\t0\n"))
	f.Add([]byte("PPid:\t1\nVmRSS:\t99999999999999999999 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStatus(b)
		if err != nil {
			return
		}
		if st.PPid < 0 || st.VmRSSkB < 0 {
			t.Fatalf("parseStatus(%q) = %+v", b, st)
		}
	})
}

// TestOwnProcess reads this test's own /proc entries: its RSS, and itself
// among its parent's descendants.
func TestOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("bench: skipping: no /proc here (the benchmark command needs Linux)")
	}
	me := os.Getpid()
	st, err := readStatus(me)
	if err != nil {
		t.Fatal(err)
	}
	if st.PPid != os.Getppid() || st.VmRSSkB <= 0 {
		t.Fatalf("readStatus(self) = %+v; want PPid %d and some RSS", st, os.Getppid())
	}
	pids, err := withDescendants(os.Getppid())
	if err != nil {
		t.Fatal(err)
	}
	if pids[0] != os.Getppid() || !slices.Contains(pids, me) {
		t.Fatalf("withDescendants(parent) = %v, want it first and %d among them", pids, me)
	}
	rss, err := totalRSS([]int{me, me})
	if err != nil || rss < 2*st.VmRSSkB/2 {
		t.Fatalf("totalRSS = %d, %v", rss, err)
	}
}
