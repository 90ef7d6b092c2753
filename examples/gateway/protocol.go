package main

import "encoding/json"

// The gateway protocol: JSON payloads with an opcode, data, a sequence
// number for dispatches and an event name, as Discord-style gateways use.
type payload struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d,omitempty"`
	S  int64           `json:"s,omitempty"`
	T  string          `json:"t,omitempty"`
}

const (
	opDispatch       = 0
	opHeartbeat      = 1
	opIdentify       = 2
	opResume         = 6
	opReconnect      = 7
	opInvalidSession = 9
	opHello          = 10
	opHeartbeatAck   = 11
)

type hello struct {
	HeartbeatInterval int `json:"heartbeat_interval"` // milliseconds
}

type identify struct {
	Token      string            `json:"token"`
	Intents    int               `json:"intents"`
	Properties map[string]string `json:"properties"`
}

type resume struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       int64  `json:"seq"`
}

type ready struct {
	SessionID string `json:"session_id"`
}

func encode(op int, d any, s int64, t string) []byte {
	var raw json.RawMessage
	if d != nil {
		raw, _ = json.Marshal(d)
	}
	b, _ := json.Marshal(payload{Op: op, D: raw, S: s, T: t})
	return b
}
