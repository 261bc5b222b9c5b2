# Node 3 of a 3-node cluster on one machine, on loopback address 127.0.0.13.
# Start all three (any order):
#   kiln agent -config configs/node1.hcl
#   kiln agent -config configs/node2.hcl
#   kiln agent -config configs/node3.hcl
# On Linux every 127.0.0.0/8 address is local already; on macOS add aliases first:
#   sudo ifconfig lo0 alias 127.0.0.13
node_name        = "node3"
data_dir         = "/tmp/kiln-node3"
bind_addr        = "127.0.0.13"
bootstrap_expect = 3
retry_join       = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
log_level        = "info"

ports {
  rpc    = 7071
  gossip = 7072
}
