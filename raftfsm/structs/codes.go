package structs

// Error codes for refusals that are not about the request's content.
const (
	// CodeOverloaded: a bounded queue or a cap on concurrent work is full;
	// the request was not started and may be retried after a moment (429,
	// with Retry-After).
	CodeOverloaded = "overloaded"
	// CodeNotDeployed: the model or version exists but is not deployed, so
	// it cannot serve predictions (409).
	CodeNotDeployed = "not_deployed"
)
