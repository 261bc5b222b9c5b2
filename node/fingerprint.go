package node

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Fingerprint reads this machine's resources: CPU cores, memory and GPUs. GPUs come
// from NVML when the driver library loads, else from nvidia-smi, else from the
// config's resources { gpu { ... } } blocks. Real detection wins over declarations so
// a config copied onto a GPU machine cannot hide its real cards.
func Fingerprint(declared []GPUDecl, nodeID string) structs.Resources {
	res := structs.Resources{CPUCores: runtime.NumCPU(), MemoryMB: memTotalMB()}
	if gpus, err := nvmlGPUs(); err == nil && len(gpus) > 0 {
		res.GPUs, res.GPUSource = gpus, "nvml"
		return res
	}
	if gpus, err := nvidiaSMIGPUs(); err == nil && len(gpus) > 0 {
		res.GPUs, res.GPUSource = gpus, "nvidia-smi"
		return res
	}
	if len(declared) > 0 {
		res.GPUs, res.GPUSource = declaredGPUs(declared, nodeID), "config"
		return res
	}
	res.GPUSource = "none"
	return res
}

// declaredGPUs expands config declarations into GPUs with stable, obviously
// non-hardware UUIDs derived from the node ID.
func declaredGPUs(decls []GPUDecl, nodeID string) []structs.GPU {
	var gpus []structs.GPU
	for _, d := range decls {
		for i := 0; i < d.Count; i++ {
			idx := len(gpus)
			gpus = append(gpus, structs.GPU{
				Index:    idx,
				UUID:     fmt.Sprintf("declared-%s-%d", nodeID, idx),
				Model:    d.Model,
				MemoryMB: d.MemoryMB,
			})
		}
	}
	return gpus
}

// memTotalMB reads MemTotal from /proc/meminfo (Linux); 0 when unknown.
func memTotalMB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

// nvidiaSMIGPUs asks nvidia-smi, for machines where NVML cannot be loaded from this
// binary (e.g. a static build) but the tool is installed.
func nvidiaSMIGPUs() ([]structs.GPU, error) {
	out, err := nvidiaSMI("index,uuid,name,memory.total", 10*time.Second)
	if err != nil {
		return nil, err
	}
	return parseNvidiaSMI(out)
}

// nvidiaSMI runs nvidia-smi --query-gpu=fields as CSV without header or
// units.
func nvidiaSMI(fields string, timeout time.Duration) (string, error) {
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--query-gpu="+fields, "--format=csv,noheader,nounits").Output()
	return string(out), err
}

// parseNvidiaSMI parses lines of "index, uuid, name, memory_mib".
func parseNvidiaSMI(out string) ([]structs.GPU, error) {
	var gpus []structs.GPU
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) != 4 {
			return nil, fmt.Errorf("node: nvidia-smi line %q: want 4 fields", line)
		}
		idx, err1 := strconv.Atoi(strings.TrimSpace(f[0]))
		mem, err2 := strconv.ParseInt(strings.TrimSpace(f[3]), 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("node: nvidia-smi line %q: bad index or memory", line)
		}
		gpus = append(gpus, structs.GPU{
			Index: idx, UUID: strings.TrimSpace(f[1]), Model: strings.TrimSpace(f[2]), MemoryMB: mem,
		})
	}
	return gpus, nil
}
