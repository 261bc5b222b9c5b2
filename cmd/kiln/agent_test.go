package main

import (
	"strings"
	"testing"
)

func TestAgent_DevExecNeedsDev(t *testing.T) {
	if code := run([]string{"agent", "-dev-exec"}); code == 0 {
		t.Fatal("agent started with -dev-exec but without -dev")
	}
	if !strings.Contains(agentHelp, "-dev-exec") || !strings.Contains(agentHelp, `allowed_commands = ["*"]`) {
		t.Fatal("the agent's help does not document -dev-exec")
	}
}
