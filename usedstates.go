package spotifyauth

import "time"

// usedStates remembers login states already used, so a replayed callback
// is refused even if the browser kept the state cookie. Every entry lives
// equally long, so insertion order is expiry order: a FIFO queue finds the
// expired entries and, when full, the oldest one to forget. A flood of
// logins then costs the oldest memories, never the recent ones.
type usedStates struct {
	until map[string]time.Time // state hash → when it stops mattering
	queue []usedStateEntry     // insertion order; queue[head:] is live
	head  int
}

type usedStateEntry struct {
	key   string
	until time.Time
}

// use marks key as used and reports whether it was unused. The caller
// holds the lock that guards u.
func (u *usedStates) use(key string, now time.Time) bool {
	if u.until == nil {
		u.until = make(map[string]time.Time)
	}
	if until, ok := u.until[key]; ok && now.Before(until) {
		return false
	}
	for u.head < len(u.queue) && !now.Before(u.queue[u.head].until) {
		u.pop()
	}
	for len(u.until) >= maxUsedStates && u.head < len(u.queue) {
		u.pop()
	}
	until := now.Add(usedStateLifetime)
	u.until[key] = until
	u.queue = append(u.queue, usedStateEntry{key: key, until: until})
	return true
}

// pop forgets the oldest entry, unless its key was used again since (a
// newer entry for it is further back in the queue).
func (u *usedStates) pop() {
	e := u.queue[u.head]
	u.queue[u.head] = usedStateEntry{}
	u.head++
	if cur, ok := u.until[e.key]; ok && cur.Equal(e.until) {
		delete(u.until, e.key)
	}
	// Reuse the slice's front once half of it is spent.
	if u.head > len(u.queue)/2 {
		n := copy(u.queue, u.queue[u.head:])
		clear(u.queue[n:])
		u.queue = u.queue[:n]
		u.head = 0
	}
}

func (u *usedStates) len() int { return len(u.until) }
