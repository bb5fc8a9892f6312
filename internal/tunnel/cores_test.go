package tunnel

import (
	"slices"
	"testing"
)

func TestCoreBudget(t *testing.T) {
	var calls []int
	set := func(n int) int { calls = append(calls, n); return 0 }
	b := newCoreBudget(true, 3, set)
	r1 := b.hold()
	r2 := b.hold()
	r3 := b.hold()
	r4 := b.hold() // beyond the limit: stays at 3
	r4()
	r4() // a second release counts once
	r3()
	r2()
	r1()
	b.hold()()
	if want := []int{1, 2, 3, 2, 1}; !slices.Equal(calls, want) {
		t.Errorf("GOMAXPROCS set to %v, want %v", calls, want)
	}
	if b.held != 0 {
		t.Errorf("held = %d after every release, want 0", b.held)
	}
}

func TestCoreBudgetLeavesUsersChoice(t *testing.T) {
	b := newCoreBudget(false, 2, func(n int) int {
		t.Fatalf("GOMAXPROCS set to %d although the environment set it", n)
		return 0
	})
	b.hold()()
}
