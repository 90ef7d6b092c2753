// Package gateway is a fake Discord-style gateway for the examples and the
// tests of the embedding kit: Server follows the real rules (hello with
// heartbeat_interval, heartbeat and ACK, READY with a resume_gateway_url
// on its own path where alone op 6 is accepted, op 7, op 9, 4008 past the
// send limit, identify pacing per max_concurrency bucket). It is the
// server's side only; the client's side, a small SDK, is
// examples/gateway/shard, and the JSON on the wire is the contract
// between the two.
package gateway

import "encoding/json"

// Payload is one gateway message: an opcode, data, and for dispatches a
// sequence number and an event name.
type Payload struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d,omitempty"`
	S  int64           `json:"s,omitempty"`
	T  string          `json:"t,omitempty"`
}

// Opcodes.
const (
	OpDispatch       = 0
	OpHeartbeat      = 1
	OpIdentify       = 2
	OpResume         = 6
	OpReconnect      = 7
	OpInvalidSession = 9
	OpHello          = 10
	OpHeartbeatAck   = 11
)

// Close codes the gateway sends.
const (
	CloseUnknownOpcode     = 4001
	CloseDecodeError       = 4002
	CloseNotAuthenticated  = 4003
	CloseAuthFailed        = 4004
	CloseRateLimited       = 4008
	CloseDisallowedIntents = 4014
)

// Hello is op 10's data.
type Hello struct {
	HeartbeatInterval int64 `json:"heartbeat_interval"` // milliseconds
}

// Identify is op 2's data.
type Identify struct {
	Token   string `json:"token"`
	Intents int    `json:"intents"`
	Shard   [2]int `json:"shard"` // id, count
}

// Resume is op 6's data.
type Resume struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       int64  `json:"seq"`
}

// Ready is the READY dispatch's data.
type Ready struct {
	SessionID        string `json:"session_id"`
	ResumeGatewayURL string `json:"resume_gateway_url"`
	Shard            [2]int `json:"shard"`
}

// Encode makes a payload.
func Encode(op int, d any, s int64, t string) []byte {
	var raw json.RawMessage
	if d != nil {
		raw, _ = json.Marshal(d)
	}
	b, _ := json.Marshal(Payload{Op: op, D: raw, S: s, T: t})
	return b
}
