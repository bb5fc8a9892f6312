package vhost

import (
	"strings"
	"testing"
)

// TestListenNameLimit: a key's own cap on its names (pinhole-limits
// names=N) replaces MaxNamesPerKey for it, higher or lower, and its
// refusal says where the cap came from; none means no cap.
func TestListenNameLimit(t *testing.T) {
	r := &Router{Domain: "example.test", MaxNamesPerKey: 1}
	for _, name := range []string{"a", "b", "c"} {
		ln, err := r.ListenNameLimit(name, 80, "alice", 3, nil)
		if err != nil {
			t.Fatalf("alice's name %s of her own 3: %v", name, err)
		}
		defer ln.Close()
	}
	_, err := r.ListenNameLimit("d", 80, "alice", 3, nil)
	if want := "this key holds 3 names already, the most it may (pinhole-limits names=3 in authorized_keys): stop one of its forwards first, or ask the server's admin to raise it"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("alice's 4th name: %v, want %q", err, want)
	}
	ln, err := r.ListenNameLimit("e", 80, "bob", 0, nil)
	if err != nil {
		t.Fatalf("bob's first name under the router's cap: %v", err)
	}
	defer ln.Close()
	if _, err := r.ListenName("f", 80, "bob", nil); err == nil || !strings.Contains(err.Error(), "(--max-names-per-key 1)") {
		t.Errorf("bob's second name: %v, want the flag named", err)
	}
	for _, name := range []string{"g", "h"} {
		ln, err := r.ListenNameLimit(name, 80, "carol", -1, nil)
		if err != nil {
			t.Fatalf("carol, without a cap, name %s: %v", name, err)
		}
		defer ln.Close()
	}
}
