// Package acl resolves the token of an HTTP request into an Identity that
// answers access questions, with a per-node cache.
//
// Every node holds the whole registry, policies and tokens included, so a
// token is resolved locally: the SHA-256 of the secret is the key of the
// token's record, and its policies' rules are parsed and merged into one
// structs.ACLDecider. Resolved identities are cached by that hash. The cache is
// dropped as a whole the moment the registry's ACL index moves (any policy or
// token written, deleted or restored), so a deleted token stops working on a
// node as soon as that node applies the delete; entries also age out after
// the configured TTL. Expiry is checked on every request against the token's
// expiration time, so an expired token stops working without a write.
//
// The cost on the request path is one SHA-256 of a 36-byte secret, two atomic
// loads and one map read, with no lock: well under a microsecond next to
// the tens of microseconds of a prediction's HTTP and JSON.
package acl
