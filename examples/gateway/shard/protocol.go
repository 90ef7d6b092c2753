package shard

import "encoding/json"

// The client's side of the gateway's wire format: only what a shard sends
// or reads. The gateway declares its own side; the JSON is the contract.

// Payload is one gateway message: an opcode, data, and for dispatches a
// sequence number and an event name.
type Payload struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d,omitempty"`
	S  int64           `json:"s,omitempty"`
	T  string          `json:"t,omitempty"`
}

// The opcodes a shard sends or handles.
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

// closeRestart is the code a shard closes with when it connects again or
// hands its session to the next process: unlike 1000 and 1001, on which a
// gateway ends the session, it leaves the session resumable.
const closeRestart = 4000

// helloData is op 10's data.
type helloData struct {
	HeartbeatInterval int64 `json:"heartbeat_interval"` // milliseconds
}

// identifyData is op 2's data.
type identifyData struct {
	Token   string `json:"token"`
	Intents int    `json:"intents"`
	Shard   [2]int `json:"shard"` // id, count
}

// resumeData is op 6's data.
type resumeData struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       int64  `json:"seq"`
}

// readyData is what a shard reads of the READY dispatch's data.
type readyData struct {
	SessionID        string `json:"session_id"`
	ResumeGatewayURL string `json:"resume_gateway_url"`
}

// encode makes a payload to send.
func encode(op int, d any) []byte {
	var raw json.RawMessage
	if d != nil {
		raw, _ = json.Marshal(d)
	}
	b, _ := json.Marshal(Payload{Op: op, D: raw})
	return b
}
