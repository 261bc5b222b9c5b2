package node

import (
	"net/http"
	"strings"
	"time"

	"github.com/kilnml/kiln/node/internal/acl"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// need is what a route asks of the request's token, beyond being valid.
type need uint8

const (
	needRead  need = iota + 1 // read on the route's kind (and name)
	needWrite                 // write on the route's kind (and name)
	needAllow                 // allow on a verb kind (predict, exec)
	// needList: any valid token; the handler leaves out the items the token
	// may not read.
	needList
	// needBody: any valid token; the resource's name is in the body (or in
	// the record an ID in the path names: a job), and the handler checks
	// the right on it once it has it.
	needBody
	needToken // any valid token (health, token/self)
	needNone  // no token at all: ACL bootstrap, and /metrics when metrics_anonymous
	// needSession: a dashboard page or action; the handler reads the
	// browser's session cookie and calls the API in-process with it, so
	// the API's own checks apply (ui_endpoint.go).
	needSession
)

func (n need) access() structs.ACLAccess {
	switch n {
	case needRead:
		return structs.AccessRead
	case needWrite:
		return structs.AccessWrite
	case needAllow:
		return structs.AccessAllow
	}
	return structs.AccessNone
}

// route is one row of the HTTP API: the method and path, the handler, and what
// a token needs to call it (DESIGN.md §8). A capability adds its rows in its
// own <cap>Routes function; TestRoutes_DeclareAccess checks every row.
type route struct {
	pattern string
	handler http.HandlerFunc
	kind    structs.ACLKind
	need    need
	// name returns the resource name of a route on a named kind.
	name func(*http.Request) string
}

// pathName is the {name} path value: a model or deployment name.
func pathName(r *http.Request) string { return r.PathValue("name") }

// predictName is the model of POST /v1/models/{name}:predict.
func predictName(r *http.Request) string {
	name, _, _ := strings.Cut(r.PathValue("nameaction"), ":")
	return name
}

// endpoint is one capability's surface (DESIGN.md §1): the rows it adds to
// the route table and the RPC methods it serves to other nodes. Each
// capability builds its own in <capability>_endpoint.go.
type endpoint struct {
	routes []route
	rpcs   map[string]transport.Handler
}

// endpoints lists every capability's endpoint; a new capability adds a line.
func (a *Agent) endpoints() []endpoint {
	return []endpoint{
		a.operatorEndpoint(),
		a.registryEndpoint(),
		a.snapshotEndpoint(),
		a.modelsEndpoint(),
		a.versionsEndpoint(),
		a.datasetsEndpoint(),
		a.sourcesEndpoint(),
		a.featuresEndpoint(),
		a.pipelinesEndpoint(),
		a.jobsEndpoint(),
		a.runsEndpoint(),
		a.tuningEndpoint(),
		a.deploymentsEndpoint(),
		a.predictEndpoint(),
		a.v2Endpoint(),
		a.monitoringEndpoint(),
		a.aclEndpoint(),
		a.blobsEndpoint(),
		a.uiEndpoint(),
	}
}

// routeTable lists every route of the API: the endpoints' rows, then the
// fallback that answers 404 for the rest.
func (a *Agent) routeTable() []route {
	var rs []route
	for _, e := range a.endpoints() {
		rs = append(rs, e.routes...)
	}
	return append(rs, route{pattern: "/", handler: func(w http.ResponseWriter, r *http.Request) {
		writeError(w, structs.Errorf(structs.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	}, need: needToken})
}

// registerRPC registers the endpoints' RPC methods with the transport.
func (a *Agent) registerRPC() {
	for _, e := range a.endpoints() {
		for method, h := range e.rpcs {
			a.trans.Register(method, h)
		}
	}
}

// routes builds the HTTP API from the route table, each handler behind its
// access check.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.routeTable() {
		mux.Handle(rt.pattern, a.guard(rt))
	}
	return mux
}

// guard wraps a route's handler with its access check and, with an audit
// file, its audit record; the token is resolved once for both. With neither,
// a route waits for the request's ?index= (which authenticate waits for
// otherwise) and inference is the handler itself, so that it pays nothing:
// inference waits for ?index= in resolveTarget, within its own timeout.
func (a *Agent) guard(rt route) http.Handler {
	checked := a.acl != nil && rt.need != needNone && rt.need != needSession
	if !checked && a.audit == nil {
		if rt.need == needAllow {
			return rt.handler
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := a.waitRequestIndex(r); err != nil {
				writeError(w, err)
				return
			}
			rt.handler(w, r)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id *acl.Identity
		var err error
		if checked {
			id, err = a.authenticate(rt, r)
		} else if rt.need != needAllow {
			err = a.waitRequestIndex(r)
		}
		if a.audit != nil {
			sw := &statusWriter{ResponseWriter: w}
			defer a.auditRequest(rt, r, sw, id)
			w = sw
		}
		switch {
		case err != nil:
			writeError(w, err)
		case id == nil || rt.need == needAllow:
			// Inference: the check above is all there is, and the request
			// copy that carries the identity would cost the hot path an
			// allocation. A handler that asks anyway is refused (allowed
			// fails closed).
			rt.handler(w, r)
		default:
			rt.handler(w, r.WithContext(acl.WithIdentity(r.Context(), id)))
		}
	})
}

// authenticate resolves the request's token and applies the route's need. It
// returns the identity also when the token is valid but lacks the right, so
// the refusal is attributed in the audit log.
func (a *Agent) authenticate(rt route, r *http.Request) (*acl.Identity, error) {
	if err := a.waitRequestIndex(r); err != nil {
		return nil, err
	}
	id, err := a.acl.Resolve(requestToken(r))
	if err != nil {
		return nil, err
	}
	return id, rt.check(id, r)
}

// auditRequest records, in the audit log, a request that may change something
// (any method but GET and HEAD, inference aside) or that was refused (401,
// 403). id is the token as resolved before the handler ran, so a request that
// deletes its own token is still attributed.
func (a *Agent) auditRequest(rt route, r *http.Request, sw *statusWriter, id *acl.Identity) {
	write := r.Method != http.MethodGet && r.Method != http.MethodHead && rt.need != needAllow
	denied := sw.status == http.StatusUnauthorized || sw.status == http.StatusForbidden
	if !write && !denied {
		return
	}
	accessor := ""
	if id != nil {
		accessor = id.AccessorID()
	}
	a.audit.record(auditRecord{
		Time: time.Now().UTC(), Node: a.cfg.NodeName, AccessorID: accessor,
		Method: r.Method, Path: r.URL.Path, Status: sw.status, RemoteAddr: r.RemoteAddr,
	})
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer (flush,
// deadlines) through the wrapper.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// check applies the route's need to a resolved identity.
func (rt *route) check(id *acl.Identity, r *http.Request) error {
	want := rt.need.access()
	if want == structs.AccessNone {
		return nil // needList, needBody, needToken: the token is valid; handlers do the rest
	}
	var name string
	if rt.kind.Named() {
		name = rt.name(r)
	}
	return id.Check(rt.kind, name, want)
}

// aclIdentity resolves a token, or returns nil with ACLs off.
func (a *Agent) aclIdentity(token string) (*acl.Identity, error) {
	if a.acl == nil {
		return nil, nil
	}
	return a.acl.Resolve(token)
}

// requestToken reads the token from X-Kiln-Token or Authorization: Bearer.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Kiln-Token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// allowed reports whether the request's token grants want on a resource; with
// ACLs disabled everything is allowed. Lists use it to leave items out. With
// ACLs enabled, a request that carries no identity is refused: it fails
// closed.
func (a *Agent) allowed(r *http.Request, kind structs.ACLKind, name string, want structs.ACLAccess) bool {
	if a.acl == nil {
		return true
	}
	id := acl.FromContext(r.Context())
	return id != nil && id.Allowed(kind, name, want)
}

// authorize is allowed as an error naming what is missing, for handlers
// that learn the resource only from the body (needBody) or need a second
// right (a process version needs exec).
func (a *Agent) authorize(r *http.Request, kind structs.ACLKind, name string, want structs.ACLAccess) error {
	if a.allowed(r, kind, name, want) {
		return nil
	}
	return acl.Denied(kind, name, want)
}
