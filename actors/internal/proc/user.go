package proc

// User is an account a child runs as (exec.user), as LookupUser found it.
type User struct {
	Name     string
	UID, GID uint32
	// Groups are the account's supplementary groups; the child gets these
	// and no others, so that it keeps none of the agent's (root's).
	Groups []uint32
}
