// Shards runs a bot's shards in several worker processes that share one
// identify gate on Redis and keep each shard's session in Redis, against
// a local fake gateway with the real rules, and then deploys: it rolls
// the workers one by one, each new worker resuming the sessions the old
// one left, and finally kills one with SIGKILL. The shards are the SDK of
// examples/gateway/shard; the fake gateway is internal/gateway. Run it with
//
//	cd examples/shards && go run .                            # an in-process Redis
//	cd examples/shards && go run . -redis redis://127.0.0.1:6379/0
//
// It prints a timeline and a summary (identifies during the roll, resumes,
// dispatches lost and duplicated, the tightest identify spacing per
// bucket) and exits 1 if a rule was broken.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/resocket/resocket/internal/gateway"
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		err = worker(os.Args[2:])
	} else {
		err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shards:", err)
		os.Exit(1)
	}
}

// The rules, scaled down from Discord's (one identify per 5 s per bucket,
// 1,000 a day, sessions resumable for a while after a drop) so that the
// whole deploy takes seconds.
var rules = gateway.Config{
	Token:             "demo-token",
	HeartbeatInterval: 500 * time.Millisecond,
	MaxConcurrency:    2,
	IdentifyEvery:     300 * time.Millisecond,
	SendLimit:         100,
	SendWindow:        time.Second,
	DailyIdentifies:   20,
	SessionTTL:        10 * time.Second,
}

const (
	shards  = 6
	workers = 3
)

func run() error {
	redisURL := flag.String("redis", "", "a Redis URL (redis://host:port/db); empty: an in-process Redis")
	flag.Parse()
	if *redisURL == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer mr.Close()
		*redisURL = "redis://" + mr.Addr()
	}
	opt, err := redis.ParseURL(*redisURL)
	if err != nil {
		return fmt.Errorf("-redis: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Del(context.Background(), sessionKeys()...).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	g, err := gateway.Start(rules)
	if err != nil {
		return err
	}
	defer g.Close()
	d := &deploy{g: g, redisURL: *redisURL, start: time.Now(), delivered: map[string]int{}}
	return d.play()
}

// deploy runs the workers and keeps the books.
type deploy struct {
	g        *gateway.Server
	redisURL string
	start    time.Time

	mu         sync.Mutex
	cond       *sync.Cond
	delivered  map[string]int // "shard/id" → times delivered
	opens      map[string]int // "shard/mode" → count
	dispatched []string
	workers    [workers]*process
}

// process is one worker process.
type process struct {
	slot, gen int
	cmd       *exec.Cmd
	stdin     interface{ Close() error }
	done      chan error
}

func (d *deploy) logf(who, format string, args ...any) {
	fmt.Printf("%6dms  %-12s %s\n", time.Since(d.start).Milliseconds(), who, fmt.Sprintf(format, args...))
}

func (d *deploy) play() error {
	d.cond = sync.NewCond(&d.mu)
	d.opens = map[string]int{}
	for slot := range d.workers {
		if err := d.startWorker(slot, 1); err != nil {
			return err
		}
	}
	if err := d.waitOpens("identify", shards); err != nil {
		return err
	}
	stop := d.dispatch() // events flow from here on, to every shard
	d.logf("deploy", "all %d shards ready; events flow", shards)
	time.Sleep(500 * time.Millisecond)

	rollStart := time.Now()
	for slot := range d.workers {
		d.logf("deploy", "rolling worker %d: it closes its shards resumable, a new process resumes them", slot)
		if err := d.stopWorker(slot); err != nil {
			return err
		}
		resumes := d.count("resume")
		if err := d.startWorker(slot, 2); err != nil {
			return err
		}
		if err := d.waitOpens("resume", resumes+len(shardsOf(slot))); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
	}
	rollEnd := time.Now()

	d.logf("deploy", "killing worker 0 with SIGKILL; a new process resumes its shards from the last saved sequence")
	d.workers[0].cmd.Process.Signal(syscall.SIGKILL)
	<-d.workers[0].done
	resumes := d.count("resume")
	if err := d.startWorker(0, 3); err != nil {
		return err
	}
	if err := d.waitOpens("resume", resumes+len(shardsOf(0))); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	time.Sleep(500 * time.Millisecond) // the last events reach the workers
	for slot := range d.workers {
		if err := d.stopWorker(slot); err != nil {
			return err
		}
	}
	return d.summary(rollStart, rollEnd)
}

// dispatch sends an event to every shard every 30 ms until stopped.
func (d *deploy) dispatch() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(30 * time.Millisecond)
		defer t.Stop()
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for s := 0; s < shards; s++ {
				id := fmt.Sprintf("%d-%d", s, n)
				d.mu.Lock()
				d.dispatched = append(d.dispatched, fmt.Sprintf("%d/%s", s, id))
				d.mu.Unlock()
				d.g.Dispatch(s, "MESSAGE_CREATE", map[string]string{"id": id})
			}
		}
	}()
	return func() { cancel(); <-done }
}

func shardsOf(slot int) []int {
	var out []int
	for s := slot; s < shards; s += workers {
		out = append(out, s)
	}
	return out
}

func (d *deploy) startWorker(slot, gen int) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var ids []string
	for _, s := range shardsOf(slot) {
		ids = append(ids, strconv.Itoa(s))
	}
	cmd := exec.Command(exe, "worker", "-redis", d.redisURL, "-gateway", d.g.URL, "-shards", strings.Join(ids, ","))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{slot: slot, gen: gen, cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	d.workers[slot] = p
	who := fmt.Sprintf("worker %d.%d", slot, gen)
	d.logf(who, "started (pid %d) for shards %s", cmd.Process.Pid, strings.Join(ids, ","))
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.line(who, sc.Text())
		}
		p.done <- cmd.Wait()
	}()
	return nil
}

// stopWorker asks a worker to close its shards resumable and save their
// sessions, and waits for it to exit.
func (d *deploy) stopWorker(slot int) error {
	p := d.workers[slot]
	p.stdin.Close()
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("worker %d.%d: %w", p.slot, p.gen, err)
		}
		return nil
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		return fmt.Errorf("worker %d.%d did not stop within 10s", p.slot, p.gen)
	}
}

// line takes what a worker reports: "deliver <shard> <id>", "open <shard>
// <mode>", or anything else, printed as is.
func (d *deploy) line(who, l string) {
	f := strings.Fields(l)
	switch {
	case len(f) == 3 && f[0] == "deliver":
		d.mu.Lock()
		d.delivered[f[1]+"/"+f[2]]++
		d.mu.Unlock()
	case len(f) == 3 && f[0] == "open":
		d.mu.Lock()
		d.opens[f[2]]++
		d.mu.Unlock()
		d.cond.Broadcast()
		d.logf(who, "shard %s open (%s)", f[1], f[2])
	default:
		d.logf(who, "%s", l)
	}
}

func (d *deploy) count(mode string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.opens[mode]
}

func (d *deploy) waitOpens(mode string, n int) error {
	stop := time.AfterFunc(20*time.Second, d.cond.Broadcast)
	defer stop.Stop()
	deadline := time.Now().Add(20 * time.Second)
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.opens[mode] < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d shards open in %s mode, want %d within 20s", d.opens[mode], mode, n)
		}
		d.cond.Wait()
	}
	return nil
}

// summary prints what the gateway saw and checks the rules held.
func (d *deploy) summary(rollStart, rollEnd time.Time) error {
	ids := d.g.Records("identify")
	inRoll := 0
	spacing := map[int]time.Duration{}
	last := map[int]time.Time{}
	for _, r := range ids {
		if r.At.After(rollStart) && r.At.Before(rollEnd) {
			inRoll++
		}
		b := r.Shard % rules.MaxConcurrency
		if t, ok := last[b]; ok {
			if gap := r.At.Sub(t); spacing[b] == 0 || gap < spacing[b] {
				spacing[b] = gap
			}
		}
		last[b] = r.At
	}
	d.mu.Lock()
	lost, dup := 0, 0
	for _, k := range d.dispatched {
		switch n := d.delivered[k]; {
		case n == 0:
			lost++
		case n > 1:
			dup += n - 1
		}
	}
	dispatched := len(d.dispatched)
	d.mu.Unlock()
	fmt.Printf("\nthe gateway saw %d identifies (%d during the roll, %d too soon, %d over the daily budget), %d resumes (%d refused), %d sessions expired\n",
		len(ids), inRoll, len(d.g.Records("identify-too-soon")), len(d.g.Records("identify-over-budget")),
		len(d.g.Records("resume")), len(d.g.Records("resume-refused")), len(d.g.Records("session-expired")))
	fmt.Printf("dispatches: %d sent, %d lost, %d delivered twice (only the SIGKILL can cause these: events handled after the last save)\n", dispatched, lost, dup)
	var buckets []int
	for b := range spacing {
		buckets = append(buckets, b)
	}
	sort.Ints(buckets)
	for _, b := range buckets {
		fmt.Printf("bucket %d: tightest identify spacing %v (the rule: %v)\n", b, spacing[b].Round(time.Millisecond), rules.IdentifyEvery)
	}
	var broken []string
	if inRoll > 0 {
		broken = append(broken, "identifies during the roll")
	}
	if lost > 0 {
		broken = append(broken, "dispatches lost")
	}
	if n := len(d.g.Records("identify-too-soon")) + len(d.g.Records("identify-over-budget")) + len(d.g.Records("resume-refused")); n > 0 {
		broken = append(broken, "identifies or resumes refused")
	}
	if len(broken) > 0 {
		return errors.New("broken: " + strings.Join(broken, ", "))
	}
	return nil
}

func sessionKeys() []string {
	var keys []string
	for s := 0; s < shards; s++ {
		keys = append(keys, sessionKey(s))
	}
	return keys
}

func sessionKey(shard int) string { return fmt.Sprintf("{demo}:session:%d", shard) }
