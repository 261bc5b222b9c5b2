package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Node identity under TLS (DESIGN.md "Node identity under TLS"). The cluster CA
// proves that a peer belongs to the cluster; the certificate's SANs say which
// node it is. A certificate names a node by
//
//   - the DNS SAN "<node_name>.kiln", the primary form: operators know names
//     before a node has created its ID; or
//   - the URI SAN "kiln://node/<node_id>", for a certificate bound to the ID
//     in data_dir/node-id.
//
// Nothing else counts: no common name, no wildcard, no "<node_id>.kiln".
const (
	nodeDNSSuffix = ".kiln"
	nodeURIPrefix = "kiln://node/"
)

// nodeDNSName is the DNS SAN that names the node called name.
func nodeDNSName(name string) string { return name + nodeDNSSuffix }

// nodeURI is the URI SAN that names the node with ID id.
func nodeURI(id string) string { return nodeURIPrefix + id }

// certNaming is how a certificate names a node.
type certNaming int

const (
	namesNeither certNaming = iota
	namesByName             // DNS SAN <name>.kiln
	namesByID               // URI SAN kiln://node/<id>
)

// certNamesNode reports whether cert names the node called name with ID id,
// and how. The ID form wins when both match, since it binds the ID itself.
func certNamesNode(cert *x509.Certificate, name, id string) certNaming {
	if id != "" {
		for _, u := range cert.URIs {
			if u.String() == nodeURI(id) {
				return namesByID
			}
		}
	}
	// DNS names compare case-insensitively, as certificate verification does. A
	// "*" never matches: a wildcard would name every node.
	if name != "" && !strings.Contains(name, "*") {
		for _, dns := range cert.DNSNames {
			if strings.EqualFold(dns, nodeDNSName(name)) {
				return namesByName
			}
		}
	}
	return namesNeither
}

// certNamesSomeNode reports whether cert names any node, in either form.
func certNamesSomeNode(cert *x509.Certificate) bool {
	for _, u := range cert.URIs {
		if id, ok := strings.CutPrefix(u.String(), nodeURIPrefix); ok && id != "" {
			return true
		}
	}
	for _, dns := range cert.DNSNames {
		name, ok := strings.CutSuffix(strings.ToLower(dns), nodeDNSSuffix)
		if ok && name != "" && !strings.Contains(name, "*") {
			return true
		}
	}
	return false
}

// verifyPeerIsNode is the transport's tls.Config.VerifyPeerCertificate: after
// the chain is verified, the peer's certificate must name a node. Which node
// is the leader's check when it admits a member (identityVerified).
func verifyPeerIsNode(_ [][]byte, chains [][]*x509.Certificate) error {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return fmt.Errorf("node: tls: no verified peer certificate")
	}
	if leaf := chains[0][0]; !certNamesSomeNode(leaf) {
		return fmt.Errorf("node: tls: the peer's certificate names no node (want a DNS SAN <node_name>%s or a URI SAN %s<id>; it has %v)",
			nodeDNSSuffix, nodeURIPrefix, certSANs(leaf))
	}
	return nil
}

// certSANs lists cert's subject alternative names for logs and errors.
func certSANs(cert *x509.Certificate) []string {
	var out []string
	for _, d := range cert.DNSNames {
		out = append(out, "DNS:"+d)
	}
	for _, u := range cert.URIs {
		out = append(out, "URI:"+u.String())
	}
	for _, ip := range cert.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	if len(out) == 0 {
		out = append(out, "(none)")
	}
	return out
}

// checkOwnCert refuses to start a node whose transport certificate does not
// name it: no leader would add it to Raft, and failing here says why.
func checkOwnCert(cfg *tls.Config, certFile, name, id string) error {
	if len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return fmt.Errorf("node: tls cert_file %s holds no certificate", certFile)
	}
	leaf := cfg.Certificates[0].Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cfg.Certificates[0].Certificate[0]); err != nil {
			return fmt.Errorf("node: tls cert_file %s: %w", certFile, err)
		}
	}
	if certNamesNode(leaf, name, id) != namesNeither {
		return nil
	}
	return fmt.Errorf("node: tls cert_file %s does not name this node: it needs the DNS SAN %q (node_name %q) or the URI SAN %q; it has %s",
		certFile, nodeDNSName(name), name, nodeURI(id), strings.Join(certSANs(leaf), ", "))
}

// bootstrapPeersNamed reports whether, with TLS, every other server of a
// bootstrap configuration presents a certificate that names it. Every node
// applies the same rule to the same certificates, so an impostor is left
// out by all of them alike: the cluster then waits (with a warning) rather
// than bootstrap with it. A certificate that cannot be fetched just means
// wait and try again. The registry is empty before bootstrap, so the name
// form needs no ID look-up here.
func (a *Agent) bootstrapPeersNamed(servers []raft.Server, byID map[raft.ServerID]member, warned map[string]bool) bool {
	if a.cfg.TLS == nil {
		return true
	}
	for _, s := range servers {
		if string(s.ID) == a.id {
			continue
		}
		m := byID[s.ID]
		ctx, cancel := context.WithTimeout(a.ctx, identityCheckTimeout)
		cert, err := a.trans.PeerCertificate(ctx, string(s.Address))
		cancel()
		if err != nil {
			return false
		}
		if certNamesNode(cert, m.Name, m.Meta.ID) == namesNeither {
			if !warned[m.Meta.ID] {
				warned[m.Meta.ID] = true
				a.logger.Warn("not bootstrapping with a member whose certificate does not name it",
					"node", m.Name, "claimed_id", m.Meta.ID, "addr", s.Address, "sans", certSANs(cert),
					"want", []string{"DNS:" + nodeDNSName(m.Name), "URI:" + nodeURI(m.Meta.ID)})
			}
			return false
		}
	}
	return true
}

// identityKey is a member as the leader verifies it: the ID it claims at the
// RPC address it gossips.
type identityKey struct{ id, addr string }

// identityCheckTimeout bounds fetching a member's certificate (dial and TLS
// handshake when no session is pooled).
const identityCheckTimeout = 2 * time.Second

// identityVerified reports whether m may enter (or be changed in) the Raft
// configuration: always without TLS; with TLS, only when the certificate m's
// RPC address presents names m. A positive answer is cached for the term; a
// refusal is logged once per member and reason and checked again next pass, so
// a member whose certificate is fixed gets in.
func (r *reconciler) identityVerified(ctx context.Context, m member) bool {
	if r.a.cfg.TLS == nil {
		return true
	}
	key := identityKey{id: m.Meta.ID, addr: m.Meta.RPCAddr}
	if r.verified[key] {
		return true
	}
	sans, refusal := r.checkIdentity(ctx, m)
	if refusal == "" {
		r.verified[key] = true
		if _, ok := r.refused[key]; ok {
			delete(r.refused, key)
			r.a.logger.Info("member's certificate now names it", "node", m.Name, "id", m.Meta.ID, "addr", m.Meta.RPCAddr)
		}
		return true
	}
	logged := refusal + "|" + strings.Join(sans, ",")
	if r.refused[key] != logged {
		r.refused[key] = logged
		r.a.logger.Warn("member not admitted to raft: its certificate does not prove its identity",
			"node", m.Name, "claimed_id", m.Meta.ID, "addr", m.Meta.RPCAddr, "reason", refusal,
			"want", []string{"DNS:" + nodeDNSName(m.Name), "URI:" + nodeURI(m.Meta.ID)}, "sans", sans)
	}
	return false
}

// checkIdentity fetches the certificate m's RPC address presents and returns
// its SANs and, when it does not prove m's identity, why.
//
// A certificate that names m by name vouches for the name only, not for the ID
// m gossips; so when the registry already records that ID under another name
// (a node with its own valid certificate claiming someone else's ID), m is
// refused. A certificate naming the ID (URI SAN) needs no such look-up.
func (r *reconciler) checkIdentity(ctx context.Context, m member) (sans []string, refusal string) {
	ctx, cancel := context.WithTimeout(ctx, identityCheckTimeout)
	defer cancel()
	cert, err := r.a.trans.PeerCertificate(ctx, m.Meta.RPCAddr)
	if err != nil {
		return nil, fmt.Sprintf("cannot fetch its certificate: %v", err)
	}
	sans = certSANs(cert)
	switch certNamesNode(cert, m.Name, m.Meta.ID) {
	case namesByID:
		return sans, ""
	case namesByName:
		txn := r.a.fsm.ReadTxn()
		rec, err := txn.Node(m.Meta.ID)
		txn.Discard()
		switch {
		case structs.ErrorCode(err) == structs.CodeNotFound:
			return sans, "" // a new node: nobody holds the ID yet
		case err != nil:
			return sans, fmt.Sprintf("cannot read the registry record of ID %s: %v", m.Meta.ID, err)
		case rec.Name != m.Name:
			return sans, fmt.Sprintf("its certificate names node %q, but ID %s is registered to node %q", m.Name, m.Meta.ID, rec.Name)
		}
		return sans, ""
	}
	return sans, fmt.Sprintf("its certificate names neither node %q nor ID %s", m.Name, m.Meta.ID)
}
