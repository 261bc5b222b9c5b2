package node

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// ipList is an interface lister that answers fixed addresses.
func ipList(addrs ...string) func() ([]net.IP, error) {
	return func() ([]net.IP, error) {
		var ips []net.IP
		for _, a := range addrs {
			ips = append(ips, net.ParseIP(a))
		}
		return ips, nil
	}
}

func TestConfig_SettleAdvertiseAddr(t *testing.T) {
	cases := []struct {
		name      string
		bind      string
		advertise string
		dev       bool
		list      func() ([]net.IP, error)
		want      string   // advertise_addr after, when no error
		wantErr   []string // substrings of the error
	}{
		{name: "one private address", bind: "0.0.0.0", list: ipList("203.0.113.7", "10.1.2.3", "fe80::1", "169.254.0.9"), want: "10.1.2.3"},
		{name: "172.16/12", bind: "0.0.0.0", list: ipList("172.32.0.1", "172.31.255.1"), want: "172.31.255.1"},
		{name: "192.168/16", bind: "0.0.0.0", list: ipList("192.168.1.20"), want: "192.168.1.20"},
		{name: "CGNAT 100.64/10", bind: "0.0.0.0", list: ipList("100.127.0.5", "100.128.0.5"), want: "100.127.0.5"},
		{name: "same address on two interfaces", bind: "0.0.0.0", list: ipList("10.0.0.4", "10.0.0.4"), want: "10.0.0.4"},
		{name: "IPv6 unspecified bind", bind: "::", list: ipList("10.0.0.4", "fd00::4"), want: "10.0.0.4"},
		{name: "no address at all", bind: "0.0.0.0", list: ipList(),
			wantErr: []string{"bind_addr is 0.0.0.0", "no advertise_addr", "found no private IPv4 address", "set advertise_addr"}},
		{name: "public addresses only", bind: "0.0.0.0", list: ipList("203.0.113.7", "2001:db8::7"),
			wantErr: []string{"found no private IPv4 address", "203.0.113.7", "set advertise_addr"}},
		{name: "two private addresses", bind: "0.0.0.0", list: ipList("10.0.0.4", "203.0.113.7", "192.168.7.1"),
			wantErr: []string{"bind_addr is 0.0.0.0 and no advertise_addr is set", "found private addresses [10.0.0.4 192.168.7.1]", "set advertise_addr"}},
		{name: "lister fails", bind: "0.0.0.0", list: func() ([]net.IP, error) { return nil, errors.New("no netlink") },
			wantErr: []string{"no netlink"}},
		{name: "advertise_addr given", bind: "0.0.0.0", advertise: "10.9.9.9", list: ipList("10.0.0.4", "10.0.0.5"), want: "10.9.9.9"},
		{name: "bind to one address", bind: "10.0.0.5", list: ipList("10.0.0.4", "10.0.0.5"), want: ""},
		{name: "dev keeps loopback", bind: "0.0.0.0", dev: true, list: ipList("10.0.0.4", "10.0.0.5"), want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.BindAddr, c.AdvertiseAddr, c.Dev = tc.bind, tc.advertise, tc.dev
			err := c.settleAdvertiseAddr(tc.list)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("chose %q, want an error", c.AdvertiseAddr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.AdvertiseAddr != tc.want {
				t.Errorf("advertise_addr = %q, want %q", c.AdvertiseAddr, tc.want)
			}
		})
	}
	dev := DevConfig()
	dev.BindAddr = "0.0.0.0"
	if err := dev.settleAdvertiseAddr(ipList()); err != nil || dev.advertiseIP() != "127.0.0.1" {
		t.Errorf("-dev on 0.0.0.0 advertises %q (%v), want 127.0.0.1", dev.advertiseIP(), err)
	}
}

func TestNew_RefusesUnsettledAdvertiseAddr(t *testing.T) {
	defer func(l func() ([]net.IP, error)) { listInterfaceIPs = l }(listInterfaceIPs)
	listInterfaceIPs = ipList("10.0.0.4", "192.168.7.1")
	cfg := DefaultConfig()
	cfg.NodeName = "n"
	cfg.DataDir = t.TempDir()
	cfg.BindAddr = "0.0.0.0"
	a, err := New(cfg, nil)
	if err == nil {
		a.Shutdown()
		t.Fatal("an agent on 0.0.0.0 among two private addresses started")
	}
	if !strings.Contains(err.Error(), "found private addresses [10.0.0.4 192.168.7.1]") {
		t.Errorf("error %q does not name the candidates", err)
	}
}
