package refresher

import "time"

// fifoMap is a map with expiring entries that, when full, forgets its
// oldest entries first, so no input can grow it past its limit and a
// flood pushes out only what is oldest. Callers lock. (The root package
// keeps its own for its caches; this one holds refresh results.)
type fifoMap[V any] struct {
	entries map[string]fifoEntry[V]
	order   []fifoKey // insertion order; keys replaced since are skipped
	seq     uint64
	limit   int
}

type fifoEntry[V any] struct {
	value V
	until time.Time
	seq   uint64
}

type fifoKey struct {
	key string
	seq uint64
}

func newFIFOMap[V any](limit int) *fifoMap[V] {
	return &fifoMap[V]{entries: make(map[string]fifoEntry[V]), limit: limit}
}

func (f *fifoMap[V]) get(key string, now time.Time) (V, bool) {
	e, ok := f.entries[key]
	if !ok || !now.Before(e.until) {
		var zero V
		return zero, false
	}
	return e.value, true
}

func (f *fifoMap[V]) put(key string, value V, until time.Time) {
	f.seq++
	f.entries[key] = fifoEntry[V]{value: value, until: until, seq: f.seq}
	f.order = append(f.order, fifoKey{key, f.seq})
	for len(f.entries) > f.limit || len(f.order) > 2*f.limit {
		oldest := f.order[0]
		f.order = f.order[1:]
		if e, ok := f.entries[oldest.key]; ok && e.seq == oldest.seq {
			delete(f.entries, oldest.key)
		}
	}
}

func (f *fifoMap[V]) prune(now time.Time) {
	for k, e := range f.entries {
		if !now.Before(e.until) {
			delete(f.entries, k)
		}
	}
}
