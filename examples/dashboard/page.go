package main

import (
	"embed"
	"io/fs"
	"net/http"
)

// web is the page: HTML, its stylesheet and its scripts, all served from
// the binary, so that it works offline.
//
//go:embed web
var web embed.FS

// routes serves the page at / and the Prometheus exposition at /metrics.
func routes(metrics http.Handler) http.Handler {
	files, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.Handle("GET /", noCache(http.FileServerFS(files)))
	return mux
}

// noCache keeps a browser from showing an old page after the binary
// changed.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
