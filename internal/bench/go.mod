module github.com/resocket/resocket/internal/bench

go 1.23

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/coder/websocket v1.8.15
	github.com/gorilla/websocket v1.5.3
	github.com/resocket/resocket v0.0.0
	go.uber.org/goleak v1.3.0
)

replace github.com/resocket/resocket => ../..
