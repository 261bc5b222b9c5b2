package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// testPKI is a CA that writes node certificates for the agent tests: every
// certificate is valid for all of 127.0.1.0/24 (testNode's addresses) and
// carries the SANs a test asks for.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
	n      int
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	var err error
	if p.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	if p.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cert returns the parsed certificate template with the given SANs, unsigned:
// enough for certNamesNode.
func sanCert(t *testing.T, dns []string, uris ...string) *x509.Certificate {
	t.Helper()
	c := &x509.Certificate{DNSNames: dns}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		c.URIs = append(c.URIs, u)
	}
	return c
}

// issue writes a key pair whose certificate has the given DNS and URI SANs and
// the common name cn, and returns the agent's tls files.
func (p *testPKI) issue(t *testing.T, cn string, dns []string, uris ...string) *TLSFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.n++
	tmpl := sanCert(t, dns, uris...)
	tmpl.SerialNumber = big.NewInt(int64(p.n + 1))
	tmpl.Subject = pkix.Name{CommonName: cn}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for i := 1; i < 255; i++ {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 1, byte(i)))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &TLSFiles{
		CertFile: p.write(t, fmt.Sprintf("node%d.pem", p.n), "CERTIFICATE", der),
		KeyFile:  p.write(t, fmt.Sprintf("node%d-key.pem", p.n), "EC PRIVATE KEY", keyDER),
		CAFile:   p.caFile,
	}
}

// named gives the node transport TLS with a certificate that names it by its
// node name (the primary form).
func (p *testPKI) named(t *testing.T) testOpt {
	return func(c *Config) { c.TLS = p.issue(t, c.NodeName, []string{nodeDNSName(c.NodeName)}) }
}

// withNodeID makes the agent find id in its data dir, as if it had run before.
func withNodeID(t *testing.T, id string) testOpt {
	return func(c *Config) {
		if err := os.WriteFile(filepath.Join(c.DataDir, "node-id"), []byte(id+"\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCertNamesNode(t *testing.T) {
	const id = "0c6f7f2e-1b1a-4f55-9d44-3a0e1c9b7d21"
	tests := []struct {
		name string
		cert *x509.Certificate
		want certNaming
	}{
		{"DNS SAN with the node name", sanCert(t, []string{"rack1-a.kiln"}), namesByName},
		{"DNS SAN compares case-insensitively", sanCert(t, []string{"RACK1-A.kiln"}), namesByName},
		{"one of several DNS SANs", sanCert(t, []string{"rack1-a.example.com", "rack1-a.kiln"}), namesByName},
		{"URI SAN with the node ID", sanCert(t, nil, "kiln://node/"+id), namesByID},
		{"ID form wins over name form", sanCert(t, []string{"rack1-a.kiln"}, "kiln://node/"+id), namesByID},
		{"another node's name", sanCert(t, []string{"rack1-b.kiln"}), namesNeither},
		{"another node's ID", sanCert(t, nil, "kiln://node/11111111-2222-3333-4444-555555555555"), namesNeither},
		{"wildcard", sanCert(t, []string{"*.kiln"}), namesNeither},
		{"bare name without .kiln", sanCert(t, []string{"rack1-a"}), namesNeither},
		{"ID as a DNS name is not a form", sanCert(t, []string{id + ".kiln"}), namesNeither},
		{"name as a URI is not a form", sanCert(t, nil, "kiln://node/rack1-a"), namesNeither},
		{"no SANs", sanCert(t, nil), namesNeither},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := certNamesNode(tc.cert, "rack1-a", id); got != tc.want {
				t.Errorf("certNamesNode(%v %v) = %d, want %d", tc.cert.DNSNames, tc.cert.URIs, got, tc.want)
			}
		})
	}
	if got := certNamesNode(sanCert(t, []string{"*.kiln"}), "*", id); got != namesNeither {
		t.Errorf("node name %q matched a wildcard SAN", "*")
	}
}

// TestAgent_TLSOwnCertificate: an agent whose own transport certificate does
// not name it refuses to start, and says which SAN it needs.
func TestAgent_TLSOwnCertificate(t *testing.T) {
	pki := newTestPKI(t)
	const id = "7d0e6a51-3c39-4b8e-a1f6-2b7f7f0e4c10"
	tests := []struct {
		name    string
		cert    func(name string) *TLSFiles
		wantErr string // "" means it starts
	}{
		{"named by node name", func(name string) *TLSFiles {
			return pki.issue(t, name, []string{nodeDNSName(name)})
		}, ""},
		{"named by node ID", func(name string) *TLSFiles {
			return pki.issue(t, "any", nil, nodeURI(id))
		}, ""},
		{"names another node", func(name string) *TLSFiles {
			return pki.issue(t, name, []string{"someone-else.kiln"})
		}, "does not name this node"},
		{"common name only", func(name string) *TLSFiles {
			return pki.issue(t, nodeDNSName(name), nil)
		}, "does not name this node"},
		{"wildcard", func(name string) *TLSFiles {
			return pki.issue(t, name, []string{"*.kiln"})
		}, "does not name this node"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			n := nextTestIP.Add(1)
			cfg.NodeName = fmt.Sprintf("t%d", n)
			cfg.BindAddr = fmt.Sprintf("127.0.1.%d", n)
			cfg.DataDir = t.TempDir()
			cfg.BootstrapExpect = 1
			withNodeID(t, id)(&cfg)
			cfg.TLS = tc.cert(cfg.NodeName)
			a, err := New(cfg, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				a.Shutdown()
				return
			}
			if err == nil {
				a.Shutdown()
				t.Fatal("an agent whose certificate does not name it started")
			}
			for _, want := range []string{tc.wantErr, fmt.Sprintf("%q", nodeDNSName(cfg.NodeName)), nodeURI(id), cfg.TLS.CertFile} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
		})
	}
}

// TestReconciler_TLSMemberIdentity: with TLS, the leader adds and promotes a
// member whose certificate names it, and refuses one whose certificate does
// not prove the name and ID it gossips.
func TestReconciler_TLSMemberIdentity(t *testing.T) {
	pki := newTestPKI(t)
	a := testNode(t, pki.named(t))
	waitLeader(t, a)
	b := testNode(t, pki.named(t), func(c *Config) { c.RetryJoin = []string{a.cfg.BindAddr}; c.BootstrapExpect = 0 })
	testutil.Until(t, 20*time.Second, "the named member to become a voter", func() bool {
		f := a.raft.GetConfiguration()
		if f.Error() != nil {
			return false
		}
		for _, s := range f.Configuration().Servers {
			if s.ID == raft.ServerID(b.ID()) {
				return s.Suffrage == raft.Voter
			}
		}
		return false
	})
	// The leader's own node record backs the name/ID binding check below.
	testutil.Until(t, 10*time.Second, "the leader's node record", func() bool {
		txn := a.fsm.ReadTxn()
		defer txn.Discard()
		_, err := txn.Node(a.ID())
		return err == nil
	})

	ctx := context.Background()
	bAddr := b.trans.Addr()
	tests := []struct {
		name    string
		m       member
		want    bool
		refusal string
	}{
		{"certificate names the member", member{Name: b.cfg.NodeName, Meta: memberMeta{ID: b.ID(), RPCAddr: bAddr}}, true, ""},
		{"certificate names another node", member{Name: "impostor", Meta: memberMeta{ID: "f00dfeed-0000-4000-8000-000000000001", RPCAddr: bAddr}}, false, "names neither"},
		{"name proven, ID registered to another node", member{Name: b.cfg.NodeName, Meta: memberMeta{ID: a.ID(), RPCAddr: bAddr}}, false, "registered to node"},
		{"nothing answers", member{Name: "gone", Meta: memberMeta{ID: "gone", RPCAddr: "127.0.1.254:1"}}, false, "cannot fetch its certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &reconciler{a: a, verified: map[identityKey]bool{}, refused: map[identityKey]string{}}
			key := identityKey{id: tc.m.Meta.ID, addr: tc.m.Meta.RPCAddr}
			for pass := range 2 { // a refusal is checked again (and logged once)
				if got := r.identityVerified(ctx, tc.m); got != tc.want {
					t.Fatalf("pass %d: identityVerified = %v, want %v (refusal %q)", pass, got, tc.want, r.refused[key])
				}
			}
			if tc.want {
				if !r.verified[key] || len(r.refused) != 0 {
					t.Errorf("verified %v, refused %v: want the positive check cached", r.verified, r.refused)
				}
				return
			}
			if len(r.verified) != 0 || len(r.refused) != 1 || !strings.Contains(r.refused[key], tc.refusal) {
				t.Errorf("verified %v, refused %v: want one refusal mentioning %q", r.verified, r.refused, tc.refusal)
			}
		})
	}

	t.Run("without TLS every member passes", func(t *testing.T) {
		plain := testNode(t)
		r := &reconciler{a: plain, verified: map[identityKey]bool{}, refused: map[identityKey]string{}}
		if !r.identityVerified(ctx, member{Name: "x", Meta: memberMeta{ID: "y", RPCAddr: "127.0.1.254:1"}}) {
			t.Error("a member was refused without TLS")
		}
	})
}

func TestAgent_BootstrapPeersNamed(t *testing.T) {
	pki := newTestPKI(t)
	a := testNode(t, pki.named(t))
	b := testNode(t, pki.named(t), func(c *Config) { c.BootstrapExpect = 0 })
	servers := []raft.Server{
		{ID: raft.ServerID(a.ID()), Address: raft.ServerAddress(a.trans.Addr())},
		{ID: raft.ServerID(b.ID()), Address: raft.ServerAddress(b.trans.Addr())},
	}
	tests := []struct {
		name string
		peer member
		want bool
	}{
		{"the peer's certificate names it", member{Name: b.cfg.NodeName, Meta: memberMeta{ID: b.ID()}}, true},
		{"the peer gossips a name its certificate does not carry", member{Name: "impostor", Meta: memberMeta{ID: b.ID()}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			byID := map[raft.ServerID]member{raft.ServerID(b.ID()): tc.peer}
			if got := a.bootstrapPeersNamed(servers, byID, map[string]bool{}); got != tc.want {
				t.Fatalf("bootstrapPeersNamed = %v, want %v", got, tc.want)
			}
		})
	}
}
