package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// testTLSConfig returns a mutual-TLS config whose certificate, signed by a
// fresh CA, is valid for the loopback IPs the tests bind.
func testTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	return newTestCA(t).issue(t, "kiln node")
}

// testCA is a certificate authority for tests; every config it issues trusts it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kiln test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a mutual-TLS config with a certificate for the loopback IPs the
// tests bind, common name cn and the given DNS SANs.
func (ca *testCA) issue(t testing.TB, cn string, dnsNames ...string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.3")},
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool,
		ClientCAs:    ca.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

func withTLS(cfg *tls.Config) func(*Config) {
	return func(c *Config) { c.TLS = cfg }
}

func TestTransport_TLS(t *testing.T) {
	tlsCfg := testTLSConfig(t)

	t.Run("RPC round trip", func(t *testing.T) {
		server := testTransport(t, withTLS(tlsCfg))
		registerTestMethods(server)
		client := testTransport(t, withTLS(tlsCfg))
		var reply echoReply
		if err := client.Call(context.Background(), server.Addr(), "echo", &echoArgs{Text: "tls", N: 1}, &reply); err != nil {
			t.Fatalf("Call: %v", err)
		}
		if reply != (echoReply{Text: "tls", N: 2}) {
			t.Fatalf("reply = %+v", reply)
		}
		var re *RemoteError
		if err := client.Call(context.Background(), server.Addr(), "fail", nil, nil); !errors.As(err, &re) || re.Code != "quota_exceeded" {
			t.Fatalf("remote error over TLS: %v", err)
		}
	})

	t.Run("raft over TLS", func(t *testing.T) {
		nodes := testRaftCluster(t, []string{"127.0.0.1", "127.0.0.2"}, withTLS(tlsCfg))
		apply(t, nodes, "x")
		for _, n := range nodes {
			testutil.Until(t, 5*time.Second, "", func() bool { return n.fsm.applied() == 1 })
		}
	})

	tests := []struct {
		name   string
		client func(*Config)
	}{
		{name: "plaintext client is refused", client: func(*Config) {}},
		{name: "client trusting another CA is refused", client: withTLS(testTLSConfig(t))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			server := testTransport(t, withTLS(tlsCfg))
			registerTestMethods(server)
			client := testTransport(t, tc.client)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := client.Call(ctx, server.Addr(), "echo", &echoArgs{}, nil)
			var re *RemoteError
			if err == nil || errors.As(err, &re) {
				t.Fatalf("Call = %v, want a network failure", err)
			}
		})
	}
}

func TestTransport_PeerCertificate(t *testing.T) {
	ca := newTestCA(t)
	server := testTransport(t, withTLS(ca.issue(t, "server", "server.kiln")))
	registerTestMethods(server)
	client := testTransport(t, withTLS(ca.issue(t, "client", "client.kiln")))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	cert, err := client.PeerCertificate(ctx, server.Addr())
	if err != nil {
		t.Fatalf("PeerCertificate: %v", err)
	}
	if got := cert.DNSNames; len(got) != 1 || got[0] != "server.kiln" {
		t.Fatalf("peer certificate DNS SANs = %v, want [server.kiln]", got)
	}
	// Calls share the session whose certificate was returned: no new handshake.
	if err := client.Call(ctx, server.Addr(), "echo", &echoArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	if again, err := client.PeerCertificate(ctx, server.Addr()); err != nil || again != cert {
		t.Errorf("second PeerCertificate = %p, %v; want the pooled session's %p", again, err, cert)
	}

	// A node restarted with another certificate is seen with the new one once
	// the old session is found broken.
	addr := server.Addr()
	server.Shutdown()
	testTransport(t, withBind(addr), withTLS(ca.issue(t, "server", "renamed.kiln")))
	testutil.Until(t, 5*time.Second, "", func() bool {
		c, err := client.PeerCertificate(ctx, addr)
		return err == nil && len(c.DNSNames) == 1 && c.DNSNames[0] == "renamed.kiln"
	})

	t.Run("TLS off", func(t *testing.T) {
		plain := testTransport(t)
		if _, err := plain.PeerCertificate(ctx, addr); !errors.Is(err, ErrNoTLS) {
			t.Errorf("PeerCertificate without TLS = %v, want ErrNoTLS", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gone := ln.Addr().String()
		ln.Close()
		if _, err := client.PeerCertificate(ctx, gone); !errors.Is(err, ErrUnreachable) {
			t.Errorf("PeerCertificate of a closed port = %v, want ErrUnreachable", err)
		}
	})
}

// TestTransport_TLSPlainClientGetsNoReply speaks the RPC protocol in the clear
// (protocol byte, yamux, msgpack request) to a TLS node: the handler must not
// run and the client must be disconnected without any reply.
func TestTransport_TLSPlainClientGetsNoReply(t *testing.T) {
	server := testTransport(t, withTLS(testTLSConfig(t)))
	var ran atomic.Int32
	for _, method := range []string{"registry.apply_batch", "blob.get"} {
		server.Register(method, func(ctx context.Context, dec Decoder) (any, error) {
			ran.Add(1)
			return "done", nil
		})
	}
	for _, method := range []string{"registry.apply_batch", "blob.get"} {
		t.Run(method, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", server.Addr(), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write([]byte{ProtoRPC}); err != nil {
				t.Fatal(err)
			}
			sess, err := yamux.Client(conn, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			var req bytes.Buffer
			if err := encodeRequest(context.Background(), &req, method, map[string]any{"digest": "sha256:00", "offset": 0}); err != nil {
				t.Fatal(err)
			}
			var n int
			stream, err := sess.OpenStream()
			if err == nil {
				_ = stream.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err = stream.Write(req.Bytes()); err == nil {
					n, err = stream.Read(make([]byte, 64))
				}
			}
			var ne net.Error
			if n > 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("plaintext client: read %d bytes, err %v; want the connection closed", n, err)
			}
			t.Logf("plaintext client refused: %v", err)
		})
	}
	if n := ran.Load(); n != 0 {
		t.Errorf("handlers ran %d times for plaintext clients", n)
	}
}

func ExampleTransport_Call() {
	server, _ := New(Config{BindAddr: "127.0.0.1:0"})
	defer server.Shutdown()
	server.Register("greet", func(ctx context.Context, dec Decoder) (any, error) {
		var name string
		if err := dec.Decode(&name); err != nil {
			return nil, err
		}
		return "hello " + name, nil
	})

	client, _ := New(Config{BindAddr: "127.0.0.1:0"})
	defer client.Shutdown()
	var reply string
	if err := client.Call(context.Background(), server.Addr(), "greet", "kiln", &reply); err != nil {
		fmt.Println(err)
	}
	fmt.Println(reply)
	// Output: hello kiln
}
