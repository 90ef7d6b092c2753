module github.com/resocket/resocket

go 1.23

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/coder/websocket v1.8.15
)

require go.uber.org/goleak v1.3.0
