//go:build !cgo || !linux

package node

import (
	"errors"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// nvmlGPUs is unavailable without cgo; nvidia-smi and config declarations remain.
func nvmlGPUs() ([]structs.GPU, error) {
	return nil, errors.New("node: nvml needs a cgo build on linux")
}
