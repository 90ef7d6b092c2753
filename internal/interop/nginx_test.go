package interop

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

func nginxPath() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		return "", err
	}
	return "/usr/sbin/nginx", nil
}

// startNginx runs nginx on a free loopback port, proxying WebSockets to
// backend with the given proxy_read_timeout, and returns its ws:// URL.
func startNginx(t *testing.T, backend string, readTimeout time.Duration) string {
	t.Helper()
	bin, err := nginxPath()
	need(t, "nginx", "apt-get install -y nginx-light", err)
	logVersion(t, "nginx", func() (string, error) { return output(bin, "-v") })
	dir := t.TempDir()
	port := freePort(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers need the temp directory
	}
	conf := fmt.Sprintf(`%s
worker_processes 1;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://%[4]s;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout %[5]dms;
      proxy_send_timeout %[5]dms;
      proxy_connect_timeout 1s;
    }
  }
}
`, user, dir, port, backend, readTimeout.Milliseconds())
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(waitLimit); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not listen on %s: %s", addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "ws://" + addr + "/"
}

func startBackend(t *testing.T, addr string) *resockettest.Server {
	t.Helper()
	var srv *resockettest.Server
	var err error
	for deadline := time.Now().Add(waitLimit); ; { // the port may linger a moment after a stop
		if srv, err = resockettest.Start(addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(srv.Close) // also when the test skips for want of nginx
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Echo()}})
	return srv
}

// The backend stops: nginx answers the upgrade with 502 (retry); the
// backend comes back and the client resumes on its own.
func TestNginxBackendDown502ThenResume(t *testing.T) {
	backendAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	backend := startBackend(t, backendAddr)
	url := startNginx(t, backendAddr, 10*time.Second)
	var m modes
	c, events := connected(t, url, quick(resocket.WithHandshake(m.handshake))...)
	echo(t, c, "through nginx")
	backend.Close()
	d := next[resocket.Disconnected](t, events)
	if d.Action != resocket.ActionRetry {
		t.Fatalf("backend stop: %d %v (%v)", d.Code, d.Action, d.Err)
	}
	var saw502 bool
	for i := 0; i < 50 && !saw502; i++ {
		d := next[resocket.Disconnected](t, events)
		saw502 = d.HTTPStatus == 502 && d.Action == resocket.ActionRetry
	}
	if !saw502 {
		t.Fatal("nginx never answered 502 with the backend down")
	}
	backend = startBackend(t, backendAddr)
	defer backend.Close()
	next[resocket.Connected](t, events)
	if got := m.list(); got[len(got)-1] != resocket.ModeResume {
		t.Fatalf("modes %v: the socket after the outage should resume", got)
	}
	echo(t, c, "resumed through nginx")
}

// A backend that closes with 4014 through nginx stops the client.
func TestNginx4014IsFatal(t *testing.T) {
	backendAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	backend := startBackend(t, backendAddr)
	defer backend.Close()
	backend.Queue(resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Close(4014, "disallowed intents")}})
	url := startNginx(t, backendAddr, 10*time.Second)
	var m modes
	c, err := resocket.Dial(bounded(t), url, quick(resocket.WithHandshake(m.handshake))...)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		t.Fatal("not closed")
	}
	if websocket.CloseStatus(c.Err()) != 4014 || backend.Accepted() != 1 {
		t.Fatalf("Err() = %v after %d sockets, want 4014 after 1", c.Err(), backend.Accepted())
	}
}

// nginx cuts a socket idle for proxy_read_timeout; the heartbeat keeps a
// healthy one alive through it. Without a heartbeat the cut happens, which
// shows the timeout is real.
func TestNginxIdleTimeoutAndHeartbeat(t *testing.T) {
	const idleCut = 600 * time.Millisecond
	backendAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	backend := startBackend(t, backendAddr)
	defer backend.Close()
	url := startNginx(t, backendAddr, idleCut)

	t.Run("heartbeat-off-is-cut", func(t *testing.T) {
		_, events := connected(t, url, quick(resocket.WithHeartbeat(0, 0))...)
		d := next[resocket.Disconnected](t, events)
		if d.Action != resocket.ActionRetry {
			t.Fatalf("idle cut: %d %v", d.Code, d.Action)
		}
		t.Logf("idle socket cut by nginx: code %d (%v)", d.Code, d.Err)
	})
	t.Run("heartbeat-keeps-it-alive", func(t *testing.T) {
		var m modes // the backend takes the first message as the hello
		c, err := resocket.Dial(bounded(t), url, quick(resocket.WithHandshake(m.handshake),
			resocket.WithHeartbeat(200*time.Millisecond, 300*time.Millisecond))...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(5 * idleCut)
		if s := c.Stats(); s.Opens != 1 || s.Disconnects != 0 {
			t.Fatalf("stats %+v: the heartbeat did not keep the socket through nginx's idle cut", s)
		}
		echo(t, c, "still here")
	})
}
