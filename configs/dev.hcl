# One node on loopback, as `kiln agent -dev` runs it, but with a data dir that
# survives restarts:  kiln agent -config configs/dev.hcl
node_name        = "dev"
data_dir         = "/tmp/kiln-dev"
bind_addr        = "127.0.0.1"
bootstrap_expect = 1
log_level        = "info"
