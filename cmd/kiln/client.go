package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// clientFlags are the flags every client command takes.
type clientFlags struct {
	address string
	format  string
	// token is sent as X-Kiln-Token on every request.
	token string
	// caCert, clientCert and clientKey are PEM files for https:// addresses.
	caCert, clientCert, clientKey string
}

func newClientFlags(name string) (*flag.FlagSet, *clientFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cf := &clientFlags{}
	def := os.Getenv("KILN_ADDR")
	if def == "" {
		def = "http://127.0.0.1:7070"
	}
	fs.StringVar(&cf.address, "address", def, "HTTP address of a Kiln node (env KILN_ADDR)")
	fs.StringVar(&cf.format, "format", "table", "output format: table or json")
	fs.StringVar(&cf.token, "token", os.Getenv("KILN_TOKEN"), "ACL token secret (env KILN_TOKEN)")
	fs.StringVar(&cf.caCert, "ca-cert", os.Getenv("KILN_CACERT"), "CA certificate that signed the node's HTTPS certificate (env KILN_CACERT)")
	fs.StringVar(&cf.clientCert, "client-cert", os.Getenv("KILN_CLIENT_CERT"), "client certificate for HTTPS with client_ca_file (env KILN_CLIENT_CERT)")
	fs.StringVar(&cf.clientKey, "client-key", os.Getenv("KILN_CLIENT_KEY"), "key of -client-cert (env KILN_CLIENT_KEY)")
	return fs, cf
}

// tlsConfig builds the client TLS config from -ca-cert, -client-cert and
// -client-key; nil when none is given (system roots then apply to https).
func (cf *clientFlags) tlsConfig() (*tls.Config, error) {
	if cf.caCert == "" && cf.clientCert == "" && cf.clientKey == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cf.caCert != "" {
		pem, err := os.ReadFile(cf.caCert)
		if err != nil {
			return nil, fmt.Errorf("-ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca-cert %s holds no PEM certificate", cf.caCert)
		}
		cfg.RootCAs = pool
	}
	if (cf.clientCert == "") != (cf.clientKey == "") {
		return nil, errors.New("-client-cert and -client-key go together")
	}
	if cf.clientCert != "" {
		pair, err := tls.LoadX509KeyPair(cf.clientCert, cf.clientKey)
		if err != nil {
			return nil, fmt.Errorf("-client-cert/-client-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func (cf *clientFlags) validate() error {
	if cf.format != "table" && cf.format != "json" {
		return fmt.Errorf("-format must be table or json, not %q", cf.format)
	}
	return nil
}

// apiError is the server's error body.
type apiError struct {
	Status  int
	Message string `json:"error"`
	Code    string `json:"code"`
	// Hint says what to do (client_errors.go); notKiln marks an answer
	// that was not Kiln's, whose Message says so in full.
	Hint    string `json:"-"`
	notKiln bool
}

func (e *apiError) Error() string {
	var s string
	switch {
	case e.notKiln:
		return e.Message
	case e.Code != "":
		s = fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
	default:
		s = fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
	}
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

// clientTimeout bounds one request of a command; tests shorten it.
var clientTimeout = 60 * time.Second

// client talks to one node's HTTP API.
type client struct {
	base  string
	token string
	http  *http.Client
}

// newClient returns a client of the node at address, with the token and TLS
// settings of cf.
func newClient(address string, cf *clientFlags) (*client, error) {
	if !strings.Contains(address, "://") {
		address = "http://" + address
	}
	u, err := url.Parse(address)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("bad -address %q: want http://host:port or https://host:port", address)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tr.TLSClientConfig, err = cf.tlsConfig(); err != nil {
		return nil, err
	}
	return &client{base: strings.TrimRight(address, "/"), token: cf.token,
		http: &http.Client{Timeout: clientTimeout, Transport: tr}}, nil
}

// do sends a request with an optional JSON body and decodes a JSON answer into out.
func (c *client) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.raw(method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if json.Unmarshal(b, out) != nil {
		return c.notKiln(resp)
	}
	return nil
}

// raw sends a request and returns the response if its status is 2xx.
func (c *client) raw(method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req)
}

// send sends a prepared request and returns the response if its status is
// 2xx; any other status becomes an *apiError carrying the server's message.
func (c *client) send(req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("X-Kiln-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.explainTransport(err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		ae := &apiError{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = json.Unmarshal(b, ae)
		return nil, c.explainStatus(resp, b, ae)
	}
	return resp, nil
}

// fail prints an error the way every command does and returns exit code 1.
func fail(err error) int {
	fmt.Fprintln(os.Stderr, "Error:", err)
	return 1
}

// connect parses a client command's flags, checks the number of positional
// arguments (exactly want, or at least -want when want is negative), and returns
// a client for -address. The error text names what is wrong and shows usage.
func connect(fs *flag.FlagSet, cf *clientFlags, args []string, want int, usage string) (*client, error) {
	if err := parseClientFlags(fs, cf, args, want, usage); err != nil {
		return nil, err
	}
	return newClient(cf.address, cf)
}

// parseClientFlags is connect without the client, for commands that talk to
// several nodes.
func parseClientFlags(fs *flag.FlagSet, cf *clientFlags, args []string, want int, usage string) error {
	fs.SetOutput(io.Discard)
	if err := parseInterspersed(fs, args); err != nil {
		return fmt.Errorf("%v\n%s", err, usage)
	}
	if err := cf.validate(); err != nil {
		return err
	}
	switch n := fs.NArg(); {
	case want >= 0 && n != want:
		return fmt.Errorf("expected %d argument(s), got %d\n%s", want, n, usage)
	case want < 0 && n < -want:
		return fmt.Errorf("expected at least %d argument(s), got %d\n%s", -want, n, usage)
	}
	return nil
}

// parseInterspersed parses flags that may come before, between or after the
// positional arguments (kiln bench predict NAME -c 8), as the usage lines
// show them; "--" ends the flags. Afterwards fs.Args() holds the positional
// arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	// Parse stops at "--" and keeps what follows as the arguments, leaving
	// the flags already set as they are.
	return fs.Parse(append([]string{"--"}, positional...))
}

// printJSON writes v as indented JSON.
func printJSON(v any) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// printTable writes rows under headers, aligned.
func printTable(headers []string, rows [][]string) {
	writeTable(os.Stdout, headers, rows)
}

// writeTable is printTable onto any writer.
func writeTable(w io.Writer, headers []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}
