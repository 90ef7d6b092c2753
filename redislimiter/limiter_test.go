package redislimiter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/resocket/resocket"
)

var _ resocket.Limiter = (*Limiter)(nil)

func TestMain(m *testing.M) {
	if os.Getenv("REDISLIMITER_CHILD") != "" {
		os.Exit(child())
	}
	goleak.VerifyTestMain(m)
}

// redisServer is a real redis-server on a free loopback port, without
// persistence, that the test can stop and start again on the same port.
type redisServer struct {
	t    *testing.T
	bin  string
	port int
	cmd  *exec.Cmd
	Addr string
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed; .ci/run installs it (apt-get install -y redis-server)")
		}
		t.Skip("redis-server is not installed: apt-get install -y redis-server")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &redisServer{t: t, bin: bin, port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", r.Addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Fatalf("redis-server did not listen on %s within 10s", r.Addr)
}

func (r *redisServer) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

func (r *redisServer) client(t *testing.T) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// checkWindows fails the test if any window of length per (µs, Redis's
// clock) holds more than n of the takes.
func checkWindows(t *testing.T, takes []int64, n int, per time.Duration) {
	t.Helper()
	s := slices.Clone(takes)
	slices.Sort(s)
	for i := 0; i+n < len(s); i++ {
		if gap := time.Duration(s[i+n]-s[i]) * time.Microsecond; gap < per {
			t.Fatalf("takes %d and %d are %v apart: %d takes within %v, want at most %d", i, i+n, gap, n+1, per, n)
		}
	}
}

// TestWindowsHoldAcrossProcesses: three OS processes, five goroutines
// each, take through two windows on two keys at once. No window of either
// holds more than its N, by Redis's clock.
func TestWindowsHoldAcrossProcesses(t *testing.T) {
	r := startRedis(t)
	const procs, goroutines, each = 3, 5, 3
	windows := "3/100ms,20/1s"
	var takes []int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := 0; p < procs; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := runChild(t, r.Addr, "across", windows, goroutines, each, 0)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			takes = append(takes, out...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(takes) != procs*goroutines*each {
		t.Fatalf("%d takes, want %d", len(takes), procs*goroutines*each)
	}
	checkWindows(t, takes, 3, 100*time.Millisecond)
	checkWindows(t, takes, 20, time.Second)
}

// runChild runs this test binary as a child process that takes count
// times on each of goroutines goroutines and prints each take's time. With
// killAfter, the child is killed with SIGKILL that long after it started,
// and what it printed until then is returned.
func runChild(t *testing.T, addr, key, windows string, goroutines, count int, killAfter time.Duration) ([]int64, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "REDISLIMITER_CHILD=1", "REDISLIMITER_ADDR="+addr, "REDISLIMITER_KEY="+key,
		"REDISLIMITER_WINDOWS="+windows, fmt.Sprintf("REDISLIMITER_GOROUTINES=%d", goroutines), fmt.Sprintf("REDISLIMITER_COUNT=%d", count))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if killAfter > 0 {
		time.AfterFunc(killAfter, func() { cmd.Process.Signal(syscall.SIGKILL) })
	}
	var takes []int64
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "take "); ok {
			at, _ := strconv.ParseInt(v, 10, 64)
			takes = append(takes, at)
		}
	}
	err = cmd.Wait()
	if killAfter > 0 {
		return takes, nil
	}
	if err != nil {
		return takes, fmt.Errorf("child: %w", err)
	}
	return takes, nil
}

// child is the body of a child process.
func child() int {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDISLIMITER_ADDR")})
	defer rdb.Close()
	var l *Limiter
	var err error
	for i, w := range strings.Split(os.Getenv("REDISLIMITER_WINDOWS"), ",") {
		n, per, _ := strings.Cut(w, "/")
		nn, _ := strconv.Atoi(n)
		d, _ := time.ParseDuration(per)
		key := "{" + os.Getenv("REDISLIMITER_KEY") + "}"
		if i == 0 {
			l, err = New(rdb, key, Window{N: nn, Per: d})
		} else {
			l, err = l.And(key+":w"+strconv.Itoa(i), Window{N: nn, Per: d})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	goroutines, _ := strconv.Atoi(os.Getenv("REDISLIMITER_GOROUTINES"))
	count, _ := strconv.Atoi(os.Getenv("REDISLIMITER_COUNT"))
	var mu sync.Mutex
	var wg sync.WaitGroup
	failed := false
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < count; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				at, err := l.take(ctx)
				cancel()
				mu.Lock()
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					failed = true
				} else {
					fmt.Printf("take %d\n", at)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed {
		return 1
	}
	return 0
}

// TestCancelledWaiterTakesNothing: a waiter whose ctx ends gives its
// reservation back; the next waiter gets the slot it had.
func TestCancelledWaiterTakesNothing(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	l, err := New(rdb, "cancel", Window{N: 1, Per: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first, err := l.take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = l.take(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a waiter whose ctx ended: %v", err)
	}
	if n := rdb.ZCard(context.Background(), "cancel").Val(); n != 1 {
		t.Fatalf("%d takes kept, want 1: the cancelled waiter took one", n)
	}
	next, err := l.take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if gap := time.Duration(next-first) * time.Microsecond; gap != 300*time.Millisecond {
		t.Fatalf("the next take came %v after the first, want exactly the window (300ms)", gap)
	}
}

// TestRedisDownAndBack: with Redis stopped, Wait fails within seconds
// with an error that says so; once Redis is back, Wait works again. A
// restart without persistence forgets the takes: the window starts over.
func TestRedisDownAndBack(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	l, err := New(rdb, "down", Window{N: 1, Per: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.stop()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = l.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "Redis unreachable") || ctx.Err() != nil {
		t.Fatalf("Wait with Redis down: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the error took %v", took)
	}
	r.start()
	// The window of one per hour was full; the restarted Redis has
	// forgotten it, so this take goes at once.
	if err := l.Wait(ctx); err != nil {
		t.Fatalf("Wait after Redis came back: %v", err)
	}
}

// TestKilledProcessBlocksOnlyItsWindow: a process with forty waiters
// queued is killed with SIGKILL. Its places in the queue are dropped
// within maxSleep+margin (3 s); a waiter of another process does not wait
// for the forty turns the dead ones would have had (twelve seconds).
func TestKilledProcessBlocksOnlyItsWindow(t *testing.T) {
	r := startRedis(t)
	const per = 300 * time.Millisecond
	takes, _ := runChild(t, r.Addr, "killed", "1/300ms", 40, 1, 500*time.Millisecond)
	killed := time.Now()
	if len(takes) == 0 {
		t.Fatal("the child took nothing before it was killed")
	}
	rdb := r.client(t)
	l, err := New(rdb, "{killed}", Window{N: 1, Per: per})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	at, err := l.take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waited := time.Since(killed)
	if waited > 8*time.Second {
		t.Fatalf("waited %v after the kill: the dead process's queue held its places", waited)
	}
	checkWindows(t, append(takes, at), 1, per)
	t.Logf("the dead process took %d before it was killed; the next take came %v after the kill", len(takes), waited.Round(time.Millisecond))
}

// TestThousandWaiters: 1,000 goroutines on one key. The window holds, and
// the commands Redis runs per take stay few.
func TestThousandWaiters(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	const waiters, n, per = 1000, 50, 100 * time.Millisecond
	l, err := New(rdb, "crowd", Window{N: n, Per: per})
	if err != nil {
		t.Fatal(err)
	}
	before := scriptCalls(t, rdb)
	takes := make([]int64, waiters)
	var wg sync.WaitGroup
	errs := make(chan error, waiters)
	start := time.Now()
	for i := 0; i < waiters; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			at, err := l.take(ctx)
			takes[i] = at
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	calls := scriptCalls(t, rdb) - before
	checkWindows(t, takes, n, per)
	perTake := float64(calls) / waiters
	t.Logf("%d waiters, window %d per %v: %d script runs in %v, %.2f per take", waiters, n, per, calls, time.Since(start).Round(time.Millisecond), perTake)
	if perTake > 10 {
		t.Fatalf("%.1f script runs per take", perTake)
	}
}

// scriptCalls is how many times Redis ran a script (EVAL and EVALSHA).
func scriptCalls(t *testing.T, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				v, _, _ = strings.Cut(v, ",")
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
}

func TestNewChecksItsArguments(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, c := range []struct {
		rdb     redis.UniversalClient
		key     string
		windows []Window
		want    string
	}{
		{nil, "k", []Window{{1, time.Second}}, "Redis client is nil"},
		{rdb, "", []Window{{1, time.Second}}, "key is empty"},
		{rdb, "k", nil, "no Window"},
		{rdb, "k", []Window{{0, time.Second}}, "N must be at least 1"},
		{rdb, "k", []Window{{1, 0}}, "Per must be at least 1ms"},
	} {
		if _, err := New(c.rdb, c.key, c.windows...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%v, %q, %v): %v, want %q", c.rdb != nil, c.key, c.windows, err, c.want)
		}
	}
	l, err := New(rdb, "k", Window{N: 1, Per: time.Second})
	if err != nil {
		t.Fatalf("New contacted Redis, or refused good arguments: %v", err)
	}
	if _, err := l.And("", Window{N: 1, Per: time.Second}); err == nil || !strings.Contains(err.Error(), "key is empty") {
		t.Errorf("And with no key: %v", err)
	}
	if _, err := l.And("day", Window{N: 0, Per: time.Second}); err == nil || !strings.Contains(err.Error(), "And: window 0: N must be at least 1") {
		t.Errorf("And with N 0: %v", err)
	}
}

// TestSharedKeyKeepsLaterReservations: a key shared by several Limiters
// (a daily budget beside per-bucket windows) must not expire while one of
// them holds a reservation that still counts, whatever the others take
// later. Day window: 3 per 4 s; buckets: 1 per 3 s.
func TestSharedKeyKeepsLaterReservations(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	limiter := func(k string) *Limiter {
		l, err := New(rdb, k, Window{N: 1, Per: 3 * time.Second})
		if err == nil {
			l, err = l.And("{bot}:day", Window{N: 3, Per: 4 * time.Second})
		}
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b, c, d := limiter("{bot}:a"), limiter("{bot}:b"), limiter("{bot}:c"), limiter("{bot}:d")
	var mu sync.Mutex
	var takes []int64
	take := func(l *Limiter) {
		at, err := l.take(context.Background())
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		takes = append(takes, at)
		mu.Unlock()
	}
	take(a)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); take(a) }() // reserved 3 s ahead in the day key
	time.Sleep(100 * time.Millisecond)
	take(b) // a take now must not shorten the day key's life below that reservation's
	time.Sleep(5500 * time.Millisecond)
	take(c)
	take(b)
	take(d)
	wg.Wait()
	checkWindows(t, takes, 3, 4*time.Second)
}
