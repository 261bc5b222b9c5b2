package serving

import (
	"fmt"
	"net"
	"strconv"
)

// freePort returns prefer if it can be listened on, else a port the kernel
// picks. The port is released before the server binds it, so another
// process may take it in between; the server then fails to start, which a
// restart on a new port recovers from.
func freePort(prefer int) (int, error) {
	if prefer > 0 {
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(prefer))); err == nil {
			l.Close()
			return prefer, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("serving: no free port for a model process: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
