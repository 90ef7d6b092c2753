package chaos

import "sync"

type writeState int

// writeLog tracks each numbered write: pending, returned nil, failed, or
// echoed back.
type writeLog struct {
	mu    sync.Mutex
	state map[string]writeState
}

func (w *writeLog) set(m string, s writeState) {
	w.mu.Lock()
	w.state[m] = s
	w.mu.Unlock()
}

// echoed marks m echoed and returns its state before.
func (w *writeLog) echoed(m string) writeState {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.state[m]
	if s == writePending || s == writeOK {
		w.state[m] = writeEchoed
	}
	return s
}

// done records Write's result for m; it reports a failed write whose echo
// already came back.
func (w *writeLog) done(m string, ok bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.state[m]
	if s == writeEchoed {
		return !ok
	}
	if ok {
		w.state[m] = writeOK
	} else {
		w.state[m] = writeFailed
	}
	return false
}
