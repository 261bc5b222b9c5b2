package raftfsm

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// BenchmarkFSM_ApplyBatch applies model updates, each setting 4 tags of 256 bytes
// on one of 256 models, in batches of 1 and of 64 entries, on disk. It reports
// applied commands per second.
func BenchmarkFSM_ApplyBatch(b *testing.B) {
	const models = 256
	value := strings.Repeat("v", 256)
	for _, batchSize := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batchSize), func(b *testing.B) {
			f := testFSM(b, onDisk(b.TempDir()))
			var setup [][]byte
			for i := range models {
				setup = append(setup, createModel(b, fmt.Sprintf("model-%03d", i), nil))
			}
			f.ApplyBatch(commandLogs(1, setup...))
			index := uint64(models)

			// Commands are encoded up front; the benchmark measures Apply only.
			cmds := make([][]byte, 1024)
			for i := range cmds {
				tags := make(map[string]*string, 4)
				for j := range 4 {
					tags[fmt.Sprintf("tag-%02d", (i+j)%32)] = &value
				}
				cmds[i] = updateModel(b, fmt.Sprintf("model-%03d", i%models), tags)
			}
			logs := make([]*raft.Log, batchSize)
			for i := range logs {
				logs[i] = &raft.Log{Type: raft.LogCommand}
			}

			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for range b.N {
				for i := range logs {
					index++
					logs[i].Index, logs[i].Data = index, cmds[n%len(cmds)]
					n++
				}
				for _, res := range f.ApplyBatch(logs) {
					if _, ok := res.(*structs.Model); !ok {
						b.Fatalf("result %v", res)
					}
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "cmds/s")
		})
	}
}
