// Package pipeline runs pipelines (DESIGN.md §8): a run actor per run goes
// from step to step, each step as soon as its dependencies are done, with
// bounded parallelism. Every step transition is a registry write, so a new
// actor resumes a run after a failover from the registry alone.
//
// The decisions are a pure function of the pipeline's spec and the run's
// step states (Plan), so that they are tested without a cluster and two
// actors given the same state decide the same.
package pipeline
