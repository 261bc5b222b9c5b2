//go:build cgo && linux

package node

import (
	"errors"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// nvmlGPUs lists GPUs through NVML. go-nvml loads libnvidia-ml with dlopen, so the
// binary starts on machines without the driver; Init then fails and we fall back.
func nvmlGPUs() (gpus []structs.GPU, err error) {
	defer func() {
		if r := recover(); r != nil {
			gpus, err = nil, fmt.Errorf("node: nvml panicked: %v", r)
		}
	}()
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		return nil, errors.New("node: nvml: " + nvml.ErrorString(ret))
	}
	defer nvml.Shutdown()
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, errors.New("node: nvml device count: " + nvml.ErrorString(ret))
	}
	for i := 0; i < n; i++ {
		dev, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("node: nvml device %d: %s", i, nvml.ErrorString(ret))
		}
		uuid, _ := dev.GetUUID()
		name, _ := dev.GetName()
		mem, ret := dev.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("node: nvml device %d memory: %s", i, nvml.ErrorString(ret))
		}
		gpus = append(gpus, structs.GPU{Index: i, UUID: uuid, Model: name, MemoryMB: int64(mem.Total >> 20)})
	}
	return gpus, nil
}
