package transport

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultDialTimeout bounds connection setup (TCP connect, TLS handshake and the
// protocol byte) when Config.DialTimeout is zero.
const DefaultDialTimeout = 5 * time.Second

// Config configures a Transport.
type Config struct {
	// BindAddr is the host:port to listen on, e.g. "127.0.0.11:7071". Port 0 picks
	// a free port (tests). When the host is a specific IP, outgoing connections
	// are dialed from that IP too.
	BindAddr string

	// AdvertiseAddr is the host:port peers use to reach this node. Empty means the
	// listener's address; for an unspecified bind IP (0.0.0.0, ::) the first
	// private IP of the machine is used instead.
	AdvertiseAddr string

	// TLS, when set, makes every connection TLS, and the protocol byte is sent
	// inside it. The server side uses it as is; the client side clones it and sets
	// ServerName to the dialed host when empty, so the caller must fill RootCAs
	// (and Certificates for mutual TLS).
	TLS *tls.Config

	// Logger receives the transport's logs; nil discards them.
	Logger hclog.Logger

	// DialTimeout bounds connection setup; zero means DefaultDialTimeout.
	DialTimeout time.Duration

	// MaxRequestBytes bounds one request as the server reads it (header and
	// arguments); zero means DefaultMaxRequestBytes. A longer request fails
	// to decode, and its handler answers a bad request, so a peer cannot make
	// a node buffer without bound.
	MaxRequestBytes int64
}

// DefaultMaxRequestBytes fits a blob chunk or a batch of forwarded writes
// with room to spare.
const DefaultMaxRequestBytes = 64 << 20

// DefaultConfig returns a configuration for a single node on loopback.
func DefaultConfig() Config {
	return Config{
		BindAddr:    "127.0.0.1:7071",
		DialTimeout: DefaultDialTimeout,
	}
}

// Validate reports the first problem with the configuration, naming the field.
func (c Config) Validate() error {
	if c.BindAddr == "" {
		return fmt.Errorf("%w: bind_addr is empty", ErrInvalidConfig)
	}
	if _, _, err := splitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("%w: bind_addr %q: %v", ErrInvalidConfig, c.BindAddr, err)
	}
	if c.AdvertiseAddr != "" {
		host, port, err := splitHostPort(c.AdvertiseAddr)
		if err != nil {
			return fmt.Errorf("%w: advertise_addr %q: %v", ErrInvalidConfig, c.AdvertiseAddr, err)
		}
		if port == 0 {
			return fmt.Errorf("%w: advertise_addr %q: port must not be 0", ErrInvalidConfig, c.AdvertiseAddr)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return fmt.Errorf("%w: advertise_addr %q: host must be a reachable address", ErrInvalidConfig, c.AdvertiseAddr)
		}
	}
	if c.MaxRequestBytes < 0 {
		return fmt.Errorf("%w: max_request_bytes %d is negative", ErrInvalidConfig, c.MaxRequestBytes)
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("%w: dial_timeout %s is negative", ErrInvalidConfig, c.DialTimeout)
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port %q", portStr)
	}
	return host, port, nil
}
