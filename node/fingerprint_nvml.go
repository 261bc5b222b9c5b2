//go:build nvml && cgo && linux

package node

import (
	"errors"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// eachNVMLDevice opens NVML and calls fn with each device. go-nvml loads
// libnvidia-ml with dlopen, so the binary starts on machines without the
// driver; Init then fails and the caller falls back.
func eachNVMLDevice(fn func(i int, dev nvml.Device) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("node: nvml panicked: %v", r)
		}
	}()
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		return errors.New("node: nvml: " + nvml.ErrorString(ret))
	}
	defer nvml.Shutdown()
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return errors.New("node: nvml device count: " + nvml.ErrorString(ret))
	}
	for i := 0; i < n; i++ {
		dev, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return fmt.Errorf("node: nvml device %d: %s", i, nvml.ErrorString(ret))
		}
		if err := fn(i, dev); err != nil {
			return err
		}
	}
	return nil
}

// nvmlGPUs lists GPUs through NVML.
func nvmlGPUs() ([]structs.GPU, error) {
	var gpus []structs.GPU
	err := eachNVMLDevice(func(i int, dev nvml.Device) error {
		uuid, _ := dev.GetUUID()
		name, _ := dev.GetName()
		mem, ret := dev.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return fmt.Errorf("node: nvml device %d memory: %s", i, nvml.ErrorString(ret))
		}
		gpus = append(gpus, structs.GPU{Index: i, UUID: uuid, Model: name, MemoryMB: int64(mem.Total >> 20)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gpus, nil
}

// nvmlUse reads each device's utilisation and memory in use.
func nvmlUse() ([]GPUReading, error) {
	var use []GPUReading
	err := eachNVMLDevice(func(i int, dev nvml.Device) error {
		g := GPUReading{Index: i}
		if u, ret := dev.GetUtilizationRates(); ret == nvml.SUCCESS {
			pct := float64(u.Gpu)
			g.UtilPct = &pct
		}
		if m, ret := dev.GetMemoryInfo(); ret == nvml.SUCCESS {
			g.MemoryUsedMB = int64(m.Used >> 20)
		}
		use = append(use, g)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return use, nil
}
