package node

import (
	"context"

	"github.com/kilnml/kiln/node/internal/acl"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// A write taken by a follower is checked there, against the follower's copy
// of the ACL records, and then forwarded to the leader. The follower's copy
// may be a few milliseconds behind: a token deleted (or a policy narrowed) at
// the leader could still pass a follower that has not applied the change yet.
// So a forwarded write carries the caller's token, and the leader checks it
// again against its own, newest, state before it commits the write: it trusts
// nothing weaker than what the first node checked. Writes a node makes on its
// own behalf (registration, placement, replica states) carry no token.

// callerToken is the secret of the token the request in ctx was checked
// with; "" when ACLs are off or the write is the node's own.
func callerToken(ctx context.Context) string {
	if id := acl.FromContext(ctx); id != nil {
		return id.Secret()
	}
	return ""
}

// recheckForwarded is the leader's check of one forwarded entry and the
// token it came with: the token must still resolve, and grant what the
// command needs.
func (a *Agent) recheckForwarded(data []byte, token string) error {
	if a.acl == nil || token == "" {
		return nil
	}
	id, err := a.acl.Resolve(token)
	if err != nil {
		return err
	}
	for _, n := range commandNeeds(data) {
		if err := id.Check(n.kind, n.name, n.want); err != nil {
			return err
		}
	}
	return nil
}

// commandNeed is one right a registry command needs from the caller's token.
type commandNeed struct {
	kind structs.ACLKind
	name string
	want structs.ACLAccess
}

// commandNeeds says what rights a command needs, as the HTTP route that
// proposes it does. A body that does not decode needs nothing here: Apply
// refuses it anyway. The node's own commands (node records, placement,
// replica states) need nothing: they never carry a user's token.
func commandNeeds(data []byte) []commandNeed {
	if len(data) == 0 {
		return nil
	}
	t, body := structs.MessageType(data[0])&^structs.IgnoreUnknownFlag, data[1:]
	model := func(name string) []commandNeed {
		return []commandNeed{{structs.KindModel, name, structs.AccessWrite}}
	}
	deployment := func(name string) []commandNeed {
		return []commandNeed{{structs.KindDeployment, name, structs.AccessWrite}}
	}
	aclWrite := []commandNeed{{structs.KindACL, "", structs.AccessWrite}}
	switch t {
	case structs.ModelCreateType:
		var r structs.ModelCreateRequest
		if structs.Decode(body, &r) == nil {
			return model(r.Model.Name)
		}
	case structs.ModelUpdateType:
		var r structs.ModelUpdateRequest
		if structs.Decode(body, &r) == nil {
			return model(r.Name)
		}
	case structs.ModelDeleteType:
		var r structs.ModelDeleteRequest
		if structs.Decode(body, &r) == nil {
			return model(r.Name)
		}
	case structs.VersionCreateType:
		var r structs.VersionCreateRequest
		if structs.Decode(body, &r) == nil {
			needs := model(r.Version.Model)
			if r.Version.Format == structs.FormatProcess {
				needs = append(needs, commandNeed{structs.KindExec, "", structs.AccessAllow})
			}
			return needs
		}
	case structs.VersionDeleteType:
		var r structs.VersionDeleteRequest
		if structs.Decode(body, &r) == nil {
			return model(r.Model)
		}
	case structs.AliasSetType:
		var r structs.AliasSetRequest
		if structs.Decode(body, &r) == nil {
			return model(r.Model)
		}
	case structs.DeploymentPutType:
		var r structs.DeploymentPutRequest
		if structs.Decode(body, &r) == nil {
			return deployment(r.Deployment.Name)
		}
	case structs.DeploymentRollbackType:
		var r structs.DeploymentRollbackRequest
		if structs.Decode(body, &r) == nil {
			return deployment(r.Name)
		}
	case structs.DeploymentDeleteType:
		var r structs.DeploymentDeleteRequest
		if structs.Decode(body, &r) == nil {
			return deployment(r.Name)
		}
	case structs.ACLPolicyUpsertType, structs.ACLPolicyDeleteType, structs.ACLTokenCreateType, structs.ACLTokenDeleteType:
		return aclWrite
	}
	return nil
}
