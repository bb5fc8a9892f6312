package tunnel

import (
	"slices"
	"testing"
)

func TestCoreBudget(t *testing.T) {
	var calls []int
	set := func(n int) int { calls = append(calls, n); return 0 }
	b := NewCoreBudget(3, set)
	r1 := b.Hold()
	r2 := b.Hold()
	r3 := b.Hold()
	r4 := b.Hold() // beyond the limit: stays at 3
	r4()
	r4() // a second release counts once
	r3()
	r2()
	r1()
	b.Hold()()
	if want := []int{1, 2, 3, 2, 1}; !slices.Equal(calls, want) {
		t.Errorf("GOMAXPROCS set to %v, want %v", calls, want)
	}
	if b.held != 0 {
		t.Errorf("held = %d after every release, want 0", b.held)
	}
}

// TestNilCoreBudget: no budget leaves GOMAXPROCS alone.
func TestNilCoreBudget(t *testing.T) {
	var b *CoreBudget
	release := b.Hold()
	release()
}
