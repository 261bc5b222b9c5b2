package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// benchConn is a minimal HTTP/1.1 keep-alive client for one bench worker: it
// writes a request in one syscall and parses only the status line and
// Content-Length of the answer. The load generator shares the machine with the
// nodes it measures (on one box), so a lean client leaves them the CPU that a
// general-purpose client would take; the requests on the wire are ordinary HTTP.
type benchConn struct {
	host string // host:port
	// auth is the token header line, empty without a token.
	auth string
	conn net.Conn
	r    *bufio.Reader
	req  bytes.Buffer
}

func newBenchConn(address, token string) (*benchConn, error) {
	if !strings.Contains(address, "://") {
		address = "http://" + address
	}
	u, err := url.Parse(address)
	if err != nil || u.Host == "" || u.Scheme != "http" {
		return nil, fmt.Errorf("bad address %q: want http://host:port", address)
	}
	bc := &benchConn{host: u.Host}
	if token != "" {
		bc.auth = "X-Kiln-Token: " + token + "\r\n"
	}
	return bc, nil
}

// do sends one request and returns the status code, draining the body.
func (c *benchConn) do(method, path string, body []byte) (int, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.host, 5*time.Second)
		if err != nil {
			return 0, err
		}
		c.conn, c.r = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	c.req.Reset()
	fmt.Fprintf(&c.req, "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, path, c.host, c.auth, len(body))
	c.req.Write(body)
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write(c.req.Bytes()); err != nil {
		c.close()
		return 0, err
	}
	status, err := c.readResponse()
	if err != nil {
		c.close()
	}
	return status, err
}

func (c *benchConn) readResponse() (int, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, errors.New("bench: malformed status line")
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, errors.New("bench: malformed status code")
	}
	length, closeAfter := -1, false
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil {
				return 0, errors.New("bench: bad Content-Length")
			}
		case bytes.EqualFold(k, []byte("Connection")) && bytes.EqualFold(v, []byte("close")):
			closeAfter = true
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			return 0, errors.New("bench: chunked responses are not supported")
		}
	}
	if length < 0 {
		return 0, errors.New("bench: response without Content-Length")
	}
	if _, err := c.r.Discard(length); err != nil {
		return 0, err
	}
	if closeAfter {
		c.close()
	}
	return status, nil
}

func (c *benchConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.r = nil, nil
	}
}
