package node

import (
	"fmt"
	"net"
)

// cgnatBlock is 100.64.0.0/10 (RFC 6598), the shared address space of
// carrier-grade NAT, which clouds and overlay networks (Tailscale) also hand
// out as private addresses. go-sockaddr's GetPrivateIP, which Consul and
// Nomad use for the same choice, counts it as private too.
var cgnatBlock = &net.IPNet{IP: net.IPv4(100, 64, 0, 0).To4(), Mask: net.CIDRMask(10, 32)}

// isPrivateIPv4 reports whether ip is an IPv4 address of RFC 1918 (10/8,
// 172.16/12, 192.168/16) or RFC 6598 (100.64/10).
func isPrivateIPv4(ip net.IP) bool {
	ip4 := ip.To4()
	return ip4 != nil && (ip4.IsPrivate() || cgnatBlock.Contains(ip4))
}

// listInterfaceIPs is what New passes to settleAdvertiseAddr; tests replace it
// to start an agent among fixed addresses.
var listInterfaceIPs = interfaceIPs

// interfaceIPs lists the addresses of the network interfaces that are up,
// loopback interfaces left out. It is what settleAdvertiseAddr chooses from
// when the agent starts.
func interfaceIPs() ([]net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("node: listing network interfaces: %w", err)
	}
	var ips []net.IP
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("node: addresses of interface %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			switch v := a.(type) {
			case *net.IPNet:
				ips = append(ips, v.IP)
			case *net.IPAddr:
				ips = append(ips, v.IP)
			}
		}
	}
	return ips, nil
}

// settleAdvertiseAddr fills in advertise_addr when bind_addr is unspecified
// (0.0.0.0 or ::) and none is set: other nodes cannot reach an unspecified
// address, and advertising loopback would make every node point its peers at
// themselves. The machine's one private IPv4 address among list's is taken,
// as Consul and Nomad do; with none, or with several to choose from, the
// agent refuses to start and names the candidates, because a wrong guess
// splits the cluster in ways that are hard to see. In -dev the node is alone
// and keeps advertising loopback.
func (c *Config) settleAdvertiseAddr(list func() ([]net.IP, error)) error {
	if c.AdvertiseAddr != "" || c.Dev {
		return nil
	}
	if ip := net.ParseIP(c.BindAddr); ip == nil || !ip.IsUnspecified() {
		return nil
	}
	ips, err := list()
	if err != nil {
		return fmt.Errorf("node: bind_addr is %s and no advertise_addr is set: %w", c.BindAddr, err)
	}
	var private, other []string
	seen := map[string]bool{}
	for _, ip := range ips {
		s := ip.String()
		if seen[s] {
			continue // the same address on two interfaces is one choice
		}
		seen[s] = true
		if isPrivateIPv4(ip) {
			private = append(private, s)
		} else {
			other = append(other, s)
		}
	}
	switch len(private) {
	case 1:
		c.AdvertiseAddr = private[0]
		return nil
	case 0:
		return fmt.Errorf("node: bind_addr is %s and no advertise_addr is set; found no private IPv4 address on an interface that is up (other addresses: %v): set advertise_addr", c.BindAddr, other)
	}
	return fmt.Errorf("node: bind_addr is %s and no advertise_addr is set; found private addresses %v: set advertise_addr", c.BindAddr, private)
}
