package main

import (
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestClientErrors: each way a request can miss Kiln's API gets its own
// one-line message that names the address and what to do, and exit 1.
func TestClientErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	reply := func(status int, ctype, body string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	mtls := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	mtls.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	mtls.Config.ErrorLog = tlsSrv.Config.ErrorLog
	mtls.StartTLS()
	t.Cleanup(mtls.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mtls.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := reply(200, "application/json", `{}`)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	unauth := reply(401, "application/json", `{"error":"acl: a token is required: send it in X-Kiln-Token or Authorization: Bearer","code":"unauthenticated"}`)
	denied := reply(403, "application/json", `{"error":"permission denied: token lacks \"read\" on node","code":"permission_denied"}`)
	html := reply(200, "text/html; charset=utf-8", "<html><body>It works!</body></html>")
	html404 := reply(404, "text/html", "<h1>Not Found</h1>")

	saved := clientTimeout
	clientTimeout = 300 * time.Millisecond
	t.Cleanup(func() { clientTimeout = saved })

	cases := []struct {
		name string
		args []string
		env  string // KILN_ADDR
		want []string
	}{
		{"no agent", []string{"status", "-address", closed}, "",
			[]string{"Error: no Kiln agent answers at " + closed + " (connection refused)", "-address or KILN_ADDR", "start one with: kiln agent -dev"}},
		{"no agent, another command, address from KILN_ADDR", []string{"models", "list"}, closed,
			[]string{"Error: no Kiln agent answers at " + closed, "-address or KILN_ADDR", "kiln agent -dev"}},
		{"http to an https node", []string{"status", "-address", tlsSrv.URL[len("https://"):]}, "",
			[]string{"speaks HTTPS: use https://" + tlsSrv.Listener.Addr().String(), "-ca-cert"}},
		{"https to an http node", []string{"status", "-address", strings.Replace(plain.URL, "http://", "https://", 1)}, "",
			[]string{"speaks plain HTTP, not HTTPS: use " + plain.URL}},
		{"a CA not trusted", []string{"status", "-address", tlsSrv.URL}, "",
			[]string{"the node at " + tlsSrv.URL + " presented a certificate signed by a CA this CLI does not trust", "-ca-cert or KILN_CACERT"}},
		{"a client certificate wanted", []string{"status", "-address", mtls.URL, "-ca-cert", ca}, "",
			[]string{"the node at " + mtls.URL + " wants a client certificate: pass -client-cert and -client-key"}},
		{"401", []string{"status", "-address", unauth.URL}, "",
			[]string{"acl: a token is required", "HTTP 401", "pass a token with -token or KILN_TOKEN"}},
		{"403", []string{"nodes", "-address", denied.URL}, "",
			[]string{`token lacks "read" on node`, "HTTP 403", "the token's policy does not allow this"}},
		{"timeout", []string{"status", "-address", slow.URL}, "",
			[]string{"the node at " + slow.URL + " did not answer within 300ms", "check its log"}},
		{"not Kiln", []string{"status", "-address", html.URL}, "",
			[]string{"the server at " + html.URL + ` answered "200 OK" with text/html; charset=utf-8, not Kiln's JSON: is it a Kiln agent?`}},
		{"not Kiln, an error", []string{"models", "get", "-address", html404.URL, "iris"}, "",
			[]string{"the server at " + html404.URL + ` answered "404 Not Found" with text/html, not Kiln's JSON`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KILN_ADDR", tc.env)
			var code int
			_, errOut := captureOutput(t, func() { code = run(tc.args) })
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n"); len(lines) != 1 {
				t.Errorf("stderr has %d lines, want one:\n%s", len(lines), errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
		})
	}
}

// TestStatusWait: status -wait asks again until the node knows a leader,
// and fails naming the wait when it never does.
func TestStatusWait(t *testing.T) {
	saved := statusPoll
	statusPoll = 10 * time.Millisecond
	t.Cleanup(func() { statusPoll = saved })
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leader := ""
		if calls.Add(1) >= 3 {
			leader = "127.0.0.1:7071"
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"node_name":"dev","leader":"` + leader + `"}`))
	}))
	t.Cleanup(srv.Close)
	var code int
	out, errOut := captureOutput(t, func() { code = run([]string{"status", "-wait", "5s", "-address", srv.URL}) })
	if code != 0 || calls.Load() != 3 || !strings.Contains(out, "127.0.0.1:7071") {
		t.Fatalf("exit %d after %d calls, stdout %q, stderr %q", code, calls.Load(), out, errOut)
	}
	calls.Store(-100)
	_, errOut = captureOutput(t, func() { code = run([]string{"status", "-wait", "100ms", "-address", srv.URL}) })
	if code != 1 || !strings.Contains(errOut, "knows no leader after 100ms") {
		t.Fatalf("no leader: exit %d, stderr %q", code, errOut)
	}
}
