package clustertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCluster_TLS runs a cluster whose Raft and RPC traffic is mutual TLS: it
// forms, and a write through one node (forwarded to the leader over TLS when it is
// a follower) is read on every node.
func TestCluster_TLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeTestPKI(t, dir)
	c := newCluster(t, 3, withHCL(fmt.Sprintf("tls {\n  cert_file = %q\n  key_file = %q\n  ca_file = %q\n}", cert, key, ca)))
	leader := c.waitLeader(leaderTimeout)
	follower := c.others(leader)[0]
	idx := follower.createModel("over-tls", map[string]string{"k": "v"})
	for _, nd := range c.all() {
		var m model
		if err := nd.getJSON(fmt.Sprintf("/v1/models/over-tls?index=%d", idx), &m); err != nil || m.Tags["k"] != "v" {
			t.Errorf("%s: got %+v, %v", nd.name, m, err)
		}
	}
	// The RPC/Raft port speaks TLS and wants a client certificate.
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(ca)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", follower.rpcAddr(), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatalf("TLS handshake with a valid client certificate: %v", err)
	}
	conn.Close()
	conn, err = tls.DialWithDialer(dialer, "tcp", follower.rpcAddr(), &tls.Config{RootCAs: pool})
	if err == nil {
		// TLS 1.3 reports a refused client certificate on the first read; an
		// accepted connection would just wait for our protocol byte (a timeout).
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the RPC port accepted a client without a certificate (read: %v)", err)
	}
}

// writeTestPKI writes a CA and one certificate, valid for client and server use on
// every 127.0.0.x address, and returns the three PEM paths.
func writeTestPKI(t *testing.T, dir string) (caPath, certPath, keyPath string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kiln node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for i := 1; i < 255; i++ {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, byte(i)))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("node.pem", "CERTIFICATE", der), write("node-key.pem", "EC PRIVATE KEY", keyDER)
}
