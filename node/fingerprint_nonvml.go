//go:build !nvml || !cgo || !linux

package node

import (
	"errors"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// nvmlGPUs is NVML, left out of this build: NVML needs the nvml build tag
// (and cgo on linux). nvidia-smi, which ships with the same driver, and
// config declarations remain.
func nvmlGPUs() ([]structs.GPU, error) {
	return nil, errors.New("node: nvml is not in this build (go build -tags nvml, with cgo on linux)")
}

func nvmlUse() ([]GPUReading, error) {
	_, err := nvmlGPUs()
	return nil, err
}
