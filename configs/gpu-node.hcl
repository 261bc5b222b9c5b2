# A bare-metal GPU node joining an existing cluster. GPUs are found through NVML
# (or nvidia-smi); the resources block below is only used when neither sees a GPU,
# e.g. to declare cards on a machine whose driver tools are not installed.
node_name  = "gpu1"
data_dir   = "/var/lib/kiln"
bind_addr  = "10.0.0.21"
retry_join = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
# Same key on every node: kiln agent prints none; make one with
#   head -c 32 /dev/urandom | base64
# encrypt = "..."

resources {
  gpu {
    model     = "NVIDIA A100-SXM4-80GB"
    memory_mb = 81920
    count     = 8
  }
}
