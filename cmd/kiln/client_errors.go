package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// What the CLI says when a request does not reach Kiln's API as it should:
// one line that names the address, what went wrong in a person's terms, and
// what to do. Every command's requests go through client.send (or, for a
// streamed push, explainTransport and notKiln), so every command says the
// same thing for the same trouble; TestClientErrors holds each message.

// addrHint is how the address is chosen, for messages that name it.
const addrHint = "set it with -address or KILN_ADDR"

// explainTransport turns an error of http.Client.Do into the CLI's message.
func (c *client) explainTransport(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		recErr    tls.RecordHeaderError
		netErr    net.Error
		dnsErr    *net.DNSError
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("no Kiln agent answers at %s (%s); %s, or start one with: kiln agent -dev", c.base, rootCause(err), addrHint)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("no Kiln agent answers at %s: the host %q is not known; %s", c.base, dnsErr.Name, addrHint)
	case errors.As(err, &recErr), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("the node at %s speaks plain HTTP, not HTTPS: use %s (%s)", c.base, strings.Replace(c.base, "https://", "http://", 1), addrHint)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("the node at %s presented a certificate signed by a CA this CLI does not trust: pass that CA with -ca-cert or KILN_CACERT", c.base)
	case errors.As(err, &hostErr):
		return fmt.Errorf("the node at %s presented a certificate for other names (%v): use an address its certificate names, %s", c.base, hostErr, addrHint)
	case strings.Contains(err.Error(), "tls: certificate required"), strings.Contains(err.Error(), "tls: bad certificate"):
		return fmt.Errorf("the node at %s wants a client certificate: pass -client-cert and -client-key (or KILN_CLIENT_CERT and KILN_CLIENT_KEY)", c.base)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		within := "in time"
		if c.http.Timeout > 0 {
			within = "within " + c.http.Timeout.String()
		}
		return fmt.Errorf("the node at %s did not answer %s: it may be overloaded or cut off; check its log, or ask another node with -address", c.base, within)
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("the node at %s closed the connection without answering: is it a Kiln agent, and does it speak HTTPS (then use https://)? %s", c.base, addrHint)
	}
	return fmt.Errorf("could not reach %s: %v", c.base, err)
}

// rootCause is the innermost error's text, such as "connection refused".
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// explainStatus turns a non-2xx answer into the CLI's error, an *apiError
// either way so that callers can act on its status: Kiln's own errors (a
// JSON body with "error") keep the server's words, with what to do for 401
// and 403; anything else is not Kiln.
func (c *client) explainStatus(resp *http.Response, body []byte, ae *apiError) error {
	if ae.Message == "" {
		if resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), "HTTP request to an HTTPS server") {
			return &apiError{Status: resp.StatusCode, notKiln: true, Message: fmt.Sprintf("the node at %s speaks HTTPS: use %s (%s), with -ca-cert if a private CA signed its certificate",
				c.base, strings.Replace(c.base, "http://", "https://", 1), addrHint)}
		}
		return c.notKiln(resp)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		ae.Hint = "pass a token with -token or KILN_TOKEN"
	case http.StatusForbidden:
		ae.Hint = "the token's policy does not allow this; use a token whose policy does"
	}
	return ae
}

// notKiln says the answer did not come from Kiln's API.
func (c *client) notKiln(resp *http.Response) error {
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "no content type"
	}
	return &apiError{Status: resp.StatusCode, notKiln: true,
		Message: fmt.Sprintf("the server at %s answered %q with %s, not Kiln's JSON: is it a Kiln agent? (%s)", c.base, resp.Status, ct, addrHint)}
}
