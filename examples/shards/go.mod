module github.com/resocket/resocket/examples/shards

go 1.23

replace (
	github.com/resocket/resocket => ../..
	github.com/resocket/resocket/redislimiter => ../../redislimiter
)

require (
	github.com/alicebob/miniredis/v2 v2.34.0
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/redis/go-redis/v9 v9.7.3
	github.com/resocket/resocket v0.0.0-00010101000000-000000000000
	github.com/resocket/resocket/redislimiter v0.0.0-00010101000000-000000000000
)

require (
	github.com/alicebob/gopher-json v0.0.0-20230218143504-906a9b012302 // indirect
	github.com/cespare/xxhash/v2 v2.2.0 // indirect
	github.com/coder/websocket v1.8.15 // indirect
	github.com/dgryski/go-rendezvous v0.0.0-20200823014737-9f7001d12a5f // indirect
	github.com/yuin/gopher-lua v1.1.1 // indirect
)
