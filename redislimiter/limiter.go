// Package redislimiter is an identify gate shared by every process and
// machine that uses the same Redis: a resocket.Limiter whose windows hold
// across all of them.
//
// Bots outgrow one process, but a gateway's identify budget is global
// (Discord: one identify per 5 s in each bucket shard_id % max_concurrency,
// and 1,000 per 24 h for the whole bot). A Limiter keeps at most N takes in
// any window of length Per, for every window given, over every process
// that uses the same keys. All windows are checked and taken atomically,
// in one Lua script, against Redis's clock, never the callers'. Discord's
// rules, for shard id: the bucket's window on its own key, and the bot's
// day on a key every bucket shares (And):
//
//	bucket := fmt.Sprintf("{bot}:identify:%d", id%maxConcurrency)
//	gate, err := redislimiter.New(rdb, bucket, redislimiter.Window{N: 1, Per: 5*time.Second + 50*time.Millisecond})
//	if err == nil {
//		gate, err = gate.And("{bot}:identify:day", redislimiter.Window{N: 1000, Per: 24 * time.Hour})
//	}
//
// and resocket.WithIdentifyLimiter(gate) on the shard's client. The
// windows hold on Redis's clock: two callers in different processes
// return from Wait up to the difference of their round trips to Redis
// apart, and a gateway counts arrivals, hence the margin above.
//
// Order: waiters are served in the order they first reached Redis, across
// processes; those whose turns all fall within one window (the shortest
// Per) take the earliest free slots in the order they ask, so they may
// swap among themselves, never with a waiter further back. A take is
// reserved at most one window ahead; a waiter further back sleeps until its turn is near and asks
// again, so a take costs a few commands, not a poll loop. A waiter whose
// ctx ends takes nothing (its reservation is given back); a process that
// stops calling (killed) loses its place in the queue a few seconds after
// it was due to call again, and its reservations count only within their
// window, so it blocks nobody much beyond the window.
//
// Failure: New checks its arguments and does not contact Redis. When
// Redis is unreachable, Wait returns an error that says so (for
// resocket, a failed attempt, retried with backoff; never fatal), and
// works again once Redis is back. Keys expire by themselves. A take whose
// reply is lost (a timeout on the way back) may still count on Redis: the
// window errs on the safe side. A Redis restarted without persistence
// forgets the takes: right after it, up to N takes per window go at once,
// so a window that spans the restart may hold up to 2N.
//
// With Redis Cluster every key of a Limiter (New's and And's) must hash to
// one slot: put a {hash tag} in them, as above. The queue keys are derived from New's key
// and share its tag (or, without one, its slot).
package redislimiter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Window is one limit: at most N takes in any window of length Per.
type Window struct {
	N   int
	Per time.Duration
}

// Limiter is a sliding-window limit kept in Redis. It satisfies
// resocket.Limiter. It is safe for concurrent use.
type Limiter struct {
	rdb     redis.UniversalClient
	key     string
	windows []keyedWindow
	keys    []string // the queue, the leases, then each distinct window key
	args    []any    // ARGV after the member, the margin and the longest sleep: the windows
	margin  time.Duration
}

type keyedWindow struct {
	key string
	Window
}

// A waiter sleeps at most maxSleep between calls, and keeps its place in
// the queue margin past its next call: a process that stops calling
// (killed) loses its places within maxSleep+margin. 1,000 waiters on one
// key cost Redis at most 500 calls a second.
const (
	maxSleep = 2 * time.Second
	margin   = time.Second
)

// New returns a Limiter that keeps windows under key in rdb. It checks
// its arguments and does not contact Redis.
func New(rdb redis.UniversalClient, key string, windows ...Window) (*Limiter, error) {
	switch {
	case rdb == nil:
		return nil, errors.New("redislimiter: New: the Redis client is nil")
	case key == "":
		return nil, errors.New("redislimiter: New: key is empty")
	case len(windows) == 0:
		return nil, errors.New("redislimiter: New: no Window given")
	}
	l := &Limiter{rdb: rdb, key: key, margin: margin}
	return l.with("New", key, windows)
}

// And returns a Limiter that also keeps windows under another key, all
// checked and taken in the same script: a budget shared by many Limiters
// (a bot's identifies per day, beside each bucket's own window). Every
// Limiter that uses a key must give it the same windows. l is unchanged.
func (l *Limiter) And(key string, windows ...Window) (*Limiter, error) {
	switch {
	case key == "":
		return nil, errors.New("redislimiter: And: key is empty")
	case len(windows) == 0:
		return nil, errors.New("redislimiter: And: no Window given")
	}
	return l.with("And", key, windows)
}

// with returns a copy of l with windows on key added.
func (l *Limiter) with(method, key string, windows []Window) (*Limiter, error) {
	for i, w := range windows {
		switch {
		case w.N < 1:
			return nil, fmt.Errorf("redislimiter: %s: window %d: N must be at least 1, got %d", method, i, w.N)
		case w.Per < time.Millisecond:
			return nil, fmt.Errorf("redislimiter: %s: window %d: Per must be at least 1ms, got %v", method, i, w.Per)
		}
	}
	n := *l
	n.windows = append([]keyedWindow(nil), l.windows...)
	for _, w := range windows {
		n.windows = append(n.windows, keyedWindow{key, w})
	}
	n.keys = []string{queueKey(n.key, "queue"), queueKey(n.key, "lease")}
	index := map[string]int{}
	n.args = []any{len(n.windows)}
	for _, w := range n.windows {
		if _, ok := index[w.key]; !ok {
			n.keys = append(n.keys, w.key)
			index[w.key] = len(n.keys) // Lua's KEYS are 1-based
		}
		n.args = append(n.args, index[w.key], w.N, w.Per.Microseconds())
	}
	return &n, nil
}

// queueKey derives a key of the Limiter's own in the same Cluster slot as
// key: key's own {tag} if it has one, else key itself as the tag.
func queueKey(key, what string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key + ":" + what
		}
	}
	return "{" + key + "}:" + what
}

// Wait returns nil once a take is allowed by every window, or an error:
// ctx's, when it ended first (nothing is taken then), or one that says
// Redis could not be reached.
func (l *Limiter) Wait(ctx context.Context) error {
	_, err := l.take(ctx)
	return err
}

// take waits for a take and returns its time on Redis's clock, in
// microseconds since the epoch.
func (l *Limiter) take(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	me := member()
	for {
		r, err := l.call(ctx, me)
		if err != nil {
			l.giveBack(ctx, me) // the call may have reached Redis
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("redislimiter: %q: Redis unreachable or failing: %w", l.key, err)
		}
		if !sleep(ctx, r.sleep) {
			l.giveBack(ctx, me)
			return 0, ctx.Err()
		}
		if r.granted {
			return r.at, nil
		}
	}
}

// reply is what one run of the script said.
type reply struct {
	granted bool          // a take is reserved at at: sleep until then
	sleep   time.Duration // until the take, or until asking again
	at      int64         // the take's time (µs, Redis's clock), when granted
}

func (l *Limiter) call(ctx context.Context, me string) (reply, error) {
	argv := append([]any{me, l.margin.Microseconds(), maxSleep.Microseconds()}, l.args...)
	v, err := gate.Run(ctx, l.rdb, l.keys, argv...).Slice()
	if err != nil {
		return reply{}, err
	}
	if len(v) != 3 {
		return reply{}, fmt.Errorf("unexpected script reply %v", v)
	}
	granted, _ := v[0].(int64)
	sleepUS, err1 := strconv.ParseInt(fmt.Sprint(v[1]), 10, 64)
	at, err2 := strconv.ParseInt(fmt.Sprint(v[2]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return reply{}, fmt.Errorf("unexpected script reply %v: %w", v, err)
	}
	return reply{granted: granted == 1, sleep: time.Duration(sleepUS) * time.Microsecond, at: at}, nil
}

// giveBack removes a waiter's place and any reservation it holds, so that
// a waiter that gave up takes nothing. Best effort: if Redis cannot be
// reached, the reservation counts until it leaves its window.
func (l *Limiter) giveBack(ctx context.Context, me string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	giveBack.Run(ctx, l.rdb, l.keys, me)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func member() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// gate is the take, atomic on Redis. KEYS: the queue (member → when it
// first came), the leases (member → when it loses its place), then the
// window keys (sorted sets of take times). ARGV: the member, the margin
// and the longest sleep (µs), the window count, then per window its key's
// index in KEYS, N and Per (µs).
//
// Slots are given in queue order: a waiter whose turn (its rank in the
// queue, counted in slots each as early as every window allows) falls
// within the shortest Per takes the earliest free slot; the waiters whose
// turns are that close may so swap slots among themselves, never with one
// further back. A waiter whose turn is further is told to sleep until it
// comes within that horizon (at most maxsleep), and keeps its place for
// that sleep plus the margin.
var gate = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local q, l, me, margin, maxsleep = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local gone = redis.call('ZRANGEBYSCORE', l, '-inf', now)
for _, m in ipairs(gone) do
  redis.call('ZREM', q, m)
  redis.call('ZREM', l, m)
end
redis.call('ZADD', q, 'NX', now, me)
local rank = redis.call('ZRANK', q, me)

local w = tonumber(ARGV[4])
local win, keep, horizon = {}, {}, 0
for i = 0, w - 1 do
  local k, n, per = tonumber(ARGV[5 + 3*i]), tonumber(ARGV[6 + 3*i]), tonumber(ARGV[7 + 3*i])
  win[i + 1] = {k = k, n = n, per = per}
  if not keep[k] or keep[k] < per then keep[k] = per end
  if horizon == 0 or per < horizon then horizon = per end
end
-- Each key's takes that still count, oldest first (reservations included).
local takes = {}
for k, per in pairs(keep) do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now - per)
  local s = redis.call('ZRANGE', KEYS[k], 0, -1, 'WITHSCORES')
  local list = {}
  for j = 2, #s, 2 do list[#list + 1] = tonumber(s[j]) end
  takes[k] = list
end
-- The slots of the next takes, in order: each as early as every window
-- allows (the N-th last take before it, plus Per), never before the one
-- before it. Slot rank+1 is this waiter's turn.
local function nextslot(after)
  local at = after
  for _, x in ipairs(win) do
    local list = takes[x.k]
    if #list >= x.n then
      local free = list[#list - x.n + 1] + x.per
      if free > at then at = free end
    end
  end
  return at
end
local first = nextslot(now)
local slot = first
for j = 1, math.min(rank, 10000) do -- a queue longer than that polls more often
  for k in pairs(keep) do table.insert(takes[k], slot) end
  slot = nextslot(slot)
end

if slot - now <= horizon then
  -- This waiter's turn is within one window: it takes the earliest slot.
  for k, per in pairs(keep) do
    redis.call('ZADD', KEYS[k], first, me)
    -- Only ever extend: another Limiter sharing the key may hold a later
    -- reservation that must count until it leaves its window.
    local ttl = math.ceil((first - now + per) / 1000) + 1000
    if redis.call('PTTL', KEYS[k]) < ttl then redis.call('PEXPIRE', KEYS[k], ttl) end
  end
  redis.call('ZREM', q, me)
  redis.call('ZREM', l, me)
  return {1, string.format('%.0f', first - now), string.format('%.0f', first)}
end
-- Not yet: sleep until the turn comes within the horizon (at most
-- maxsleep), keeping the place in the queue a margin longer.
local sleep = math.min(math.max(slot - now - horizon, 1000), maxsleep)
redis.call('ZADD', l, now + sleep + margin, me)
local ttl = math.ceil((sleep + margin) / 1000) + 1000
if redis.call('PTTL', q) < ttl then redis.call('PEXPIRE', q, ttl) end
if redis.call('PTTL', l) < ttl then redis.call('PEXPIRE', l, ttl) end
return {0, string.format('%.0f', sleep), '0'}
`)

// giveBack removes a member from the queue, the leases and every window.
var giveBack = redis.NewScript(`
for _, k in ipairs(KEYS) do redis.call('ZREM', k, ARGV[1]) end
return 0
`)
