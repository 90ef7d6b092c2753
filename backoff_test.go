package resocket_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func now() time.Time { return epoch }

func TestDefaultSchedule(t *testing.T) {
	drop := resocket.Disconnect{Code: websocket.StatusAbnormalClosure}
	for i := 0; i < 200; i++ {
		s := resocket.NewSchedule(resocket.DefaultBackoff(), now)
		if d := s.Next(drop); d < 0 || d >= time.Second {
			t.Fatalf("first retry %v, want in [0, 1s)", d)
		}
		// Then 1 s ×1.6 with ±20% jitter.
		want := float64(time.Second)
		for k := 0; k < 20; k++ {
			d := float64(s.Next(drop))
			lo, hi := 0.8*min(want, float64(resocket.DefaultMaxDelay)), 1.2*min(want, float64(resocket.DefaultMaxDelay))
			if d < lo-1 || d > hi+1 {
				t.Fatalf("retry %d: %v, want in [%v, %v]", k+2, time.Duration(d), time.Duration(lo), time.Duration(hi))
			}
			want *= 1.6
		}
		s.Reset()
		if d := s.Next(drop); d >= time.Second {
			t.Fatalf("first retry after a reset %v, want in [0, 1s)", d)
		}
	}
}

func TestScheduleFloors(t *testing.T) {
	header := func(v string) http.Header { return http.Header{"Retry-After": {v}} }
	rows := []struct {
		name string
		d    resocket.Disconnect
		min  time.Duration
		max  time.Duration
	}{
		{"retry-after-seconds", resocket.Disconnect{HTTPStatus: 503, Header: header("7")}, 7 * time.Second, 7 * time.Second},
		{"retry-after-date", resocket.Disconnect{HTTPStatus: 429, Header: header(epoch.Add(30 * time.Second).Format(http.TimeFormat))}, 30 * time.Second, 30 * time.Second},
		{"retry-after-capped", resocket.Disconnect{HTTPStatus: 429, Header: header("999999")}, 10 * time.Minute, 10 * time.Minute},
		{"retry-after-garbage", resocket.Disconnect{HTTPStatus: 503, Header: header("soon")}, 0, time.Second},
		{"1013", resocket.Disconnect{Code: websocket.StatusTryAgainLater}, 5 * time.Second, 5 * time.Second},
		{"525", resocket.Disconnect{HTTPStatus: 525}, 30 * time.Second, 30 * time.Second},
		{"530", resocket.Disconnect{HTTPStatus: 530}, 30 * time.Second, 30 * time.Second},
		{"plain-drop", resocket.Disconnect{Code: websocket.StatusAbnormalClosure}, 0, time.Second},
	}
	for _, row := range rows {
		s := resocket.NewSchedule(resocket.DefaultBackoff(), now)
		if d := s.Next(row.d); d < row.min || d > row.max {
			t.Errorf("%s: first delay %v, want in [%v, %v]", row.name, d, row.min, row.max)
		}
	}
}

func TestCallerScheduleIsUsedAsIs(t *testing.T) {
	s := resocket.NewSchedule(backoff.NewConstantBackOff(3*time.Second), now)
	for i := 0; i < 3; i++ {
		if d := s.Next(resocket.Disconnect{Code: 1006}); d != 3*time.Second {
			t.Fatalf("delay %v, want exactly 3s", d)
		}
	}
	stop := resocket.NewSchedule(&backoff.StopBackOff{}, now)
	if d := stop.Next(resocket.Disconnect{Code: 1006}); d != backoff.Stop {
		t.Fatalf("StopBackOff gave %v", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	rows := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{" 5 ", 5 * time.Second, true},
		{"0", 0, true},
		{epoch.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{epoch.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Monday, 02-Jan-26 03:04:35 GMT", 30 * time.Second, true}, // RFC 850
		{"99999999999999999999999", 10 * time.Minute, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
	}
	for _, row := range rows {
		got, ok := resocket.ParseRetryAfter(row.in, epoch)
		if got != row.want || ok != row.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", row.in, got, ok, row.want, row.ok)
		}
	}
}

// WithBackoff(DefaultBackoff) is the default schedule, jittered first retry
// included: asking for the default by name changes nothing.
func TestDefaultBackoffByNameIsTheDefault(t *testing.T) {
	for name, opts := range map[string][]resocket.Option{
		"no-option": nil,
		"by-name":   {resocket.WithBackoff(resocket.DefaultBackoff)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := refusedURL(t)
			var early int
			const clients = 20
			for i := 0; i < clients; i++ {
				c, rec := newRecorded(t, url, append([]resocket.Option{resocket.WithHeartbeat(0, 0)}, opts...)...)
				go c.Connect(bounded(t))
				d := rec.disconnected(t)
				c.Close()
				if d.Next < 0 || d.Next >= resocket.DefaultInitialDelay {
					t.Fatalf("first retry after %v, want in [0, %v)", d.Next, resocket.DefaultInitialDelay)
				}
				if d.Next < resocket.DefaultInitialDelay/2 {
					early++
				}
			}
			// Uniform in [0, 1 s): all 20 in the upper half has odds of 1 in a million.
			if early == 0 {
				t.Fatalf("none of %d first retries fell in [0, %v): the first retry is not jittered", clients, resocket.DefaultInitialDelay/2)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", " 7 ", "Wed, 21 Oct 2015 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "-1", "1e3", "99999999999999999999", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := resocket.ParseRetryAfter(s, now)
		if !ok && d != 0 {
			t.Fatalf("%q: %v with ok=false", s, d)
		}
		if d < 0 {
			t.Fatalf("%q: negative delay %v", s, d)
		}
	})
}
