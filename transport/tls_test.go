package transport

import (
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
	"testing"
	"time"
)

// testTLSConfig returns a mutual-TLS config whose certificate, signed by a
// fresh CA, is valid for the loopback IPs the tests bind.
func testTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kiln test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kiln node"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.3")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool,
		ClientCAs:    pool,
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
			waitFor(t, 5*time.Second, func() bool { return n.fsm.applied() == 1 })
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
