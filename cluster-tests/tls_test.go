package clustertest

import (
	"bytes"
	"cmp"
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
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/transport"
)

// TestCluster_TLS runs a cluster whose Raft and RPC traffic is mutual TLS, each
// node with a certificate that names it: it forms, and a write through one node
// (forwarded to the leader over TLS when it is a follower) is read on every node.
func TestCluster_TLS(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	c := newTLSCluster(t, 3, pki)
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
	cert, key := pki.issue("probe")
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", follower.rpcAddr(), &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatalf("TLS handshake with a valid client certificate: %v", err)
	}
	conn.Close()
	conn, err = tls.DialWithDialer(dialer, "tcp", follower.rpcAddr(), &tls.Config{RootCAs: pki.pool})
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
	// A certificate from the same CA that names no node (an HTTPS client's, say)
	// does not get onto the RPC port either: it would bypass the ACLs.
	cert, key = pki.issue("")
	if pair, err = tls.LoadX509KeyPair(cert, key); err != nil {
		t.Fatal(err)
	}
	conn, err = tls.DialWithDialer(dialer, "tcp", follower.rpcAddr(), &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pair}})
	if err == nil {
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the RPC port accepted a CA-signed certificate that names no node (read: %v)", err)
	}
}

// TestCluster_TLSNodeIdentity: with TLS, a CA-signed certificate is not enough
// to join Raft; it must name the node (DNS SAN <node_name>.kiln or URI SAN
// kiln://node/<id>, node/DESIGN.md "Node identity under TLS").
func TestCluster_TLSNodeIdentity(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	c := newTLSCluster(t, 3, pki)
	leader := c.waitLeader(leaderTimeout)
	var join []string
	for _, nd := range c.all() {
		join = append(join, nd.ip)
	}

	t.Run("a node whose certificate names another node does not start", func(t *testing.T) {
		dir := t.TempDir()
		cert, key := pki.issue("n2")
		files := map[string]string{
			"base.hcl": fmt.Sprintf(baseHCL, "n4", filepath.Join(dir, "data"), allocIP(t), 0, quoteAll(join)),
			"tls.hcl":  tlsHCL(pki.caPath, cert, key),
		}
		args := []string{"agent"}
		for name, text := range files {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(text), 0o640); err != nil {
				t.Fatal(err)
			}
			args = append(args, "-config", path)
		}
		out, err := runKiln(args...)
		if err == nil || !strings.Contains(err.Error(), `"n4.kiln"`) || !strings.Contains(err.Error(), "DNS:n2.kiln") {
			t.Fatalf("agent n4 with a certificate for n2: %v (stdout %q); want a refusal naming the SAN n4.kiln and the SANs found", err, out)
		}
	})

	t.Run("a plain TCP client of the RPC port gets no answer", func(t *testing.T) {
		for _, method := range []string{"registry.apply_batch", "blob.get"} {
			err := plainRPC(c.others(leader)[0].rpcAddr(), method)
			var ne net.Error
			if err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%s over plain TCP: %v, want the connection closed without a reply", method, err)
			}
		}
	})

	t.Run("a member whose certificate does not prove the ID it claims is not added", func(t *testing.T) {
		// n2 dies; a new node with a valid certificate for its own name, n4,
		// claims n2's ID (its node-id file), hoping to take n2's voter seat.
		victim := c.others(leader)[0]
		testutil.WaitFor(t, leaderTimeout, func() error { // the registry binds n2's ID to its name
			var nodes struct {
				Items []struct {
					ID   string `json:"id"`
					Name string `json:"name"`
				} `json:"items"`
			}
			if err := leader.getJSON("/v1/nodes", &nodes); err != nil {
				return err
			}
			for _, n := range nodes.Items {
				if n.ID == victim.id && n.Name == victim.name {
					return nil
				}
			}
			return fmt.Errorf("no node record for %s yet: %+v", victim.name, nodes.Items)
		})
		victim.kill()
		cert, key := pki.issue("n4")
		rogue := c.newNode("n4", allocIP(t), 0, join, tlsHCL(pki.caPath, cert, key))
		if err := os.MkdirAll(rogue.dataDir(), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rogue.dataDir(), "node-id"), []byte(victim.id+"\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		rogue.start()
		rogue.waitUp()

		// Once gossip has declared n2 dead, n4 is the only member claiming its ID.
		testutil.WaitFor(t, leaderTimeout, func() error {
			members, err := leader.members()
			if err != nil {
				return err
			}
			status := map[string]string{}
			for _, m := range members {
				status[m.Name] = m.Status
			}
			if status[victim.name] == "alive" || status[rogue.name] != "alive" {
				return fmt.Errorf("gossip status on the leader: %v", status)
			}
			return nil
		})
		holdsFor(t, 5*time.Second, func() error {
			peers, err := leader.peers()
			if err != nil {
				return err
			}
			for _, p := range peers {
				if p.Address == rogue.rpcAddr() {
					return fmt.Errorf("n4 was added to raft: %+v", peers)
				}
				if p.ID == victim.id && p.Address != victim.rpcAddr() {
					return fmt.Errorf("n2's server now has address %s", p.Address)
				}
			}
			return nil
		})
		if !leader.logContains("member not admitted to raft") || !leader.logContains("claimed_id="+victim.id) {
			t.Errorf("the leader logged no refusal of n4 claiming %s", victim.id)
		}
		// The two voters left keep the cluster working.
		for _, nd := range c.others(victim, rogue) {
			nd.createModel("after-impostor-"+nd.name, nil)
		}
	})
}

// newTLSCluster is newCluster with transport TLS, each node presenting a
// certificate from pki that names it (DNS SAN <name>.kiln).
func newTLSCluster(t *testing.T, n int, pki *testPKI) *cluster {
	t.Helper()
	c := emptyCluster(t)
	ips := make([]string, n)
	for i := range ips {
		ips[i] = allocIP(t)
	}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		cert, key := pki.issue(name)
		c.newNode(name, ips[i], n, ips, tlsHCL(pki.caPath, cert, key))
	}
	for _, nd := range c.all() {
		nd.start()
	}
	for _, nd := range c.all() {
		nd.waitUp()
	}
	c.waitLeader(leaderTimeout)
	c.waitVoters(n, leaderTimeout)
	return c
}

func tlsHCL(ca, cert, key string) string {
	return fmt.Sprintf("tls {\n  cert_file = %q\n  key_file = %q\n  ca_file = %q\n}\n", cert, key, ca)
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// plainRPC speaks the RPC protocol without TLS, as transport/rpc.go frames it:
// the protocol byte, a yamux session, and on a stream a msgpack request header
// then the arguments. It returns nil only if a reply came back.
func plainRPC(addr, method string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{transport.ProtoRPC}); err != nil {
		return err
	}
	sess, err := yamux.Client(conn, nil)
	if err != nil {
		return err
	}
	defer sess.Close()
	stream, err := sess.OpenStream()
	if err != nil {
		return err
	}
	_ = stream.SetDeadline(time.Now().Add(5 * time.Second))
	var req bytes.Buffer
	enc := msgpack.NewEncoder(&req)
	// The request header's wire names ("m" method, "t" timeout in ns).
	if err := enc.Encode(map[string]any{"m": method, "t": int64(5 * time.Second)}); err != nil {
		return err
	}
	if err := enc.Encode(map[string]any{"digest": "sha256:00", "offset": 0}); err != nil {
		return err
	}
	if _, err := stream.Write(req.Bytes()); err != nil {
		return err
	}
	if _, err := stream.Read(make([]byte, 64)); err != nil {
		return err
	}
	return nil
}

// testPKI is a CA whose certificates are valid for client and server use on
// every 127.0.0.x address.
type testPKI struct {
	t      testing.TB
	dir    string
	caPath string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	serial int64
}

func newTestPKI(t testing.TB, dir string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{t: t, dir: dir, ca: ca, caKey: key, pool: x509.NewCertPool(), serial: 1}
	p.pool.AddCert(ca)
	p.caPath = p.write("ca.pem", "CERTIFICATE", der)
	return p
}

// issue writes a certificate and key for the node called name (DNS SAN
// <name>.kiln; none when name is empty) and returns their paths.
func (p *testPKI) issue(name string) (certPath, keyPath string) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: "kiln node " + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if name != "" {
		tmpl.DNSNames = []string{name + ".kiln"}
	}
	for i := 1; i < 255; i++ {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, byte(i)))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	file := fmt.Sprintf("%s-%d", cmp.Or(name, "cert"), p.serial)
	return p.write(file+".pem", "CERTIFICATE", der), p.write(file+"-key.pem", "EC PRIVATE KEY", keyDER)
}

func (p *testPKI) write(name, typ string, der []byte) string {
	p.t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// writeTestPKI writes a CA and one certificate, valid for client and server use on
// every 127.0.0.x address but naming no node (enough for HTTPS), and returns the
// three PEM paths.
func writeTestPKI(t *testing.T, dir string) (caPath, certPath, keyPath string) {
	t.Helper()
	p := newTestPKI(t, dir)
	cert, key := p.issue("")
	return p.caPath, cert, key
}
