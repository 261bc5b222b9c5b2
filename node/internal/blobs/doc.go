// Package blobs keeps content-addressed files on a node and moves them
// between nodes (DESIGN.md §3): model artifacts today, dataset files next.
//
// A Store holds complete, verified blobs under data_dir/blobs/sha256/<digest>
// and work in progress under tmp/; a blob appears under sha256/ only by a
// rename after its digest was checked, so a reader never sees a partial file.
// Collect removes what nothing references once its grace period has passed.
//
// Transfers moves blobs in chunks (ChunkBytes) over the node's RPC transport,
// so a large file is never held in memory and travels over the same
// authenticated port as everything else. A push is a sequence of blob.put
// calls under one transfer ID, each declaring the blob's size; the receiver
// hashes as it writes, refuses what runs past the size, and commits only when
// the last chunk's digest matches. At most MaxIncoming pushes are received at
// once. A fetch (Ensure) is a sequence of blob.get calls to a holder (or any
// alive member), verified the same way; concurrent fetches of one digest
// share one transfer.
//
// Blobs never go through Raft; the registry records which nodes hold them.
package blobs
