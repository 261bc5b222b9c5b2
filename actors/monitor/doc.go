// Package monitor holds monitoring's decisions, apart from the node that
// acts on them (DESIGN.md §8, "Monitoring"):
//
//   - Env is what an alert rule's condition sees: the deployment's latest
//     drift check, its live performance, its latency and error rate over the
//     rule's window, and its canary's. Compile checks a condition against
//     it when the rule is applied, so a misspelt metric, or a feature the
//     deployment's monitor does not test, is refused then, not silently
//     false forever.
//   - Step is the alert state machine: inactive → pending → firing →
//     resolved, with the rule's for duration between pending and firing. It
//     is a pure function of the state read from the registry, the
//     condition's value and the time, so that the leader's evaluator only
//     proposes what it returns, compared with the state it read: a second
//     evaluator's late move is refused by Apply, never applied twice.
//   - Backoff spaces the retries of a failed action (a webhook that does
//     not answer): 1 s, doubling to 5 min, for at most MaxAttempts.
//   - Due says which monitors' drift checks are due.
//
// The evaluation runs on the leader every monitoring.alert_interval; the
// actions run on goroutines of their own, never on the serving path.
package monitor
