package fifo

import (
	"testing"
	"time"
)

// TestAFullMapForgetsItsOldestEntriesFirst: past its limit, the map drops
// the oldest entries, never the newest; a key put again counts as new.
func TestAFullMapForgetsItsOldestEntriesFirst(t *testing.T) {
	t.Parallel()
	now := time.Now()
	m := New[int](3)
	for i, k := range []string{"a", "b", "c", "a", "d"} {
		m.Put(k, i, now.Add(time.Hour))
	}
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if _, ok := m.Get(k, now); ok != want {
			t.Errorf("%s held: %v, want %v", k, ok, want)
		}
	}
	if m.Len() != 3 {
		t.Errorf("Len %d, want 3", m.Len())
	}
}

// TestExpiredEntriesAreNotReturnedAndArePruned.
func TestExpiredEntriesAreNotReturnedAndArePruned(t *testing.T) {
	t.Parallel()
	now := time.Now()
	m := New[string](10)
	m.Put("old", "x", now)
	m.Put("new", "y", now.Add(time.Minute))
	if _, ok := m.Get("old", now); ok {
		t.Error("an entry is returned at its expiry")
	}
	m.Prune(now)
	if keys := m.Keys(); len(keys) != 1 || keys[0] != "new" {
		t.Errorf("after Prune: %v, want [new]", keys)
	}
	m.Delete("new")
	if m.Len() != 0 {
		t.Error("Delete left the entry")
	}
}
