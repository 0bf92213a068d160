// Package fifo is a map with expiring entries that, when full, forgets its
// oldest entries first, so no input can grow it past its limit and a
// flood pushes out only what is oldest, never everything at once. The
// plugin's caches (opened sessions, used login states, remembered
// refreshes) are each one.
package fifo

import "time"

// Map holds at most its limit of entries. Callers lock.
type Map[V any] struct {
	entries map[string]entry[V]
	order   []key // insertion order; keys replaced since are skipped
	seq     uint64
	limit   int
}

type entry[V any] struct {
	value V
	until time.Time
	seq   uint64
}

type key struct {
	key string
	seq uint64
}

// New returns an empty Map of at most limit entries.
func New[V any](limit int) *Map[V] {
	return &Map[V]{entries: make(map[string]entry[V]), limit: limit}
}

// Get returns the entry for k if it has not expired.
func (m *Map[V]) Get(k string, now time.Time) (V, bool) {
	e, ok := m.entries[k]
	if !ok || !now.Before(e.until) {
		var zero V
		return zero, false
	}
	return e.value, true
}

// Put sets k until the given time, evicting the oldest entries if full.
func (m *Map[V]) Put(k string, value V, until time.Time) {
	m.seq++
	m.entries[k] = entry[V]{value: value, until: until, seq: m.seq}
	m.order = append(m.order, key{k, m.seq})
	for len(m.entries) > m.limit || len(m.order) > 2*m.limit {
		oldest := m.order[0]
		m.order = m.order[1:]
		if e, ok := m.entries[oldest.key]; ok && e.seq == oldest.seq {
			delete(m.entries, oldest.key)
		}
	}
}

// Prune drops the entries that have expired.
func (m *Map[V]) Prune(now time.Time) {
	for k, e := range m.entries {
		if !now.Before(e.until) {
			delete(m.entries, k)
		}
	}
}

// Delete forgets k.
func (m *Map[V]) Delete(k string) { delete(m.entries, k) }

// Len is how many entries it holds, expired or not.
func (m *Map[V]) Len() int { return len(m.entries) }

// Keys lists the keys it holds, expired or not.
func (m *Map[V]) Keys() []string {
	out := make([]string, 0, len(m.entries))
	for k := range m.entries {
		out = append(out, k)
	}
	return out
}
