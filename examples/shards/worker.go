package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/redis/go-redis/v9"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/examples/gateway/shard"
	"github.com/resocket/resocket/redislimiter"
)

// worker runs some shards until its stdin closes, then closes them
// resumable and saves their sessions for the next process. What it sees
// goes to stdout, a line each, for the deploy to count.
func worker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	redisURL := fs.String("redis", "", "Redis URL")
	gatewayURL := fs.String("gateway", "", "gateway URL")
	list := fs.String("shards", "", "shard ids, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opt, err := redis.ParseURL(*redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	w := &shardWorker{rdb: rdb}

	var running []*shard.Shard
	var wg sync.WaitGroup
	for _, f := range strings.Split(*list, ",") {
		id, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("-shards: %w", err)
		}
		sh, err := w.newShard(*gatewayURL, id)
		if err != nil {
			return err
		}
		running = append(running, sh)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sh.Run(context.Background()); err != nil {
				fmt.Printf("shard %d stopped: %v\n", id, err)
			}
		}()
	}
	io.Copy(io.Discard, os.Stdin) // until the deploy closes it
	for _, sh := range running {
		kept := sh.Suspend() // closes with 4000: the session stays resumable
		w.save(sh.ID(), kept)
		fmt.Printf("shard %d closed resumable at seq %d; session saved\n", sh.ID(), kept.Seq)
	}
	wg.Wait()
	return nil
}

type shardWorker struct {
	rdb *redis.Client
	mu  sync.Mutex // stdout lines and saves, one at a time
}

// newShard makes shard id, resuming the session Redis holds for it, if any.
// Its identify gate is shared with every worker through Redis: one per
// bucket (shard id % max_concurrency) per IdentifyEvery, and the bot's
// daily budget.
func (w *shardWorker) newShard(url string, id int) (*shard.Shard, error) {
	gate, err := redislimiter.New(w.rdb, fmt.Sprintf("{demo}:identify:%d", id%rules.MaxConcurrency),
		// 10 ms spare for the microseconds between the send and the arrival.
		redislimiter.Window{N: 1, Per: rules.IdentifyEvery + 10*time.Millisecond})
	if err == nil {
		gate, err = gate.And("{demo}:identify:day", redislimiter.Window{N: rules.DailyIdentifies, Per: 24 * time.Hour})
	}
	if err != nil {
		return nil, err
	}
	var sh *shard.Shard
	cfg := shard.Config{
		URL: url, Token: rules.Token, ID: id, Count: shards, Intents: 513,
		IdentifyLimiter: gate,
		OnDispatch: func(p shard.Payload) {
			var d map[string]string
			json.Unmarshal(p.D, &d)
			w.mu.Lock()
			defer w.mu.Unlock()
			if p.T == "MESSAGE_CREATE" {
				fmt.Printf("deliver %d %s\n", id, d["id"])
			}
			if sh != nil {
				w.saveLocked(id, sh.State()) // after each dispatch: a process that dies resumes from here
			}
		},
		Options: []resocket.Option{
			resocket.WithHeartbeat(0, 0), // the gateway's own heartbeat watches the socket
			resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(50 * time.Millisecond) }),
		},
	}
	if kept, ok := w.load(id); ok {
		cfg.Resume = &kept
	}
	sh, err = shard.New(cfg)
	if err != nil {
		return nil, err
	}
	go report(id, sh.Client().Events())
	return sh, nil
}

// report prints the events of shard id that the deploy counts or shows.
func report(id int, events <-chan resocket.Event) {
	for e := range events {
		switch e := e.(type) {
		case resocket.Connected:
			fmt.Printf("open %d %v\n", id, e.Mode)
		case resocket.IdentifyPaced:
			fmt.Printf("shard %d: identify gate passed after %v\n", id, e.Waited.Round(time.Millisecond))
		case resocket.Disconnected:
			fmt.Printf("shard %d: closed %d: %v (%v)\n", id, e.Code, e.Action, e.Err)
		}
	}
}

func (w *shardWorker) load(id int) (shard.Resumable, bool) {
	v, err := w.rdb.HGetAll(context.Background(), sessionKey(id)).Result()
	if err != nil || v["id"] == "" {
		return shard.Resumable{}, false
	}
	seq, _ := strconv.ParseInt(v["seq"], 10, 64)
	return shard.Resumable{SessionID: v["id"], Seq: seq, ResumeURL: v["url"]}, true
}

func (w *shardWorker) save(id int, r shard.Resumable) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.saveLocked(id, r)
}

func (w *shardWorker) saveLocked(id int, r shard.Resumable) {
	if r.SessionID == "" {
		return
	}
	w.rdb.HSet(context.Background(), sessionKey(id), "id", r.SessionID, "seq", r.Seq, "url", r.ResumeURL)
}
