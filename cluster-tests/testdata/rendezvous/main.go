// Command rendezvous is a two-member "distributed job" for the cluster
// tests: it reads the variables torchrun reads (MASTER_ADDR, MASTER_PORT,
// WORLD_SIZE, RANK), and its members meet the way torch.distributed's TCP
// store does: rank 0 listens on MASTER_PORT, every other rank connects to
// MASTER_ADDR:MASTER_PORT and says hello, and rank 0 answers each. Each
// member prints what it saw and exits 0 once every member has met.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rendezvous:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := net.JoinHostPort(os.Getenv("MASTER_ADDR"), os.Getenv("MASTER_PORT"))
	world, err := strconv.Atoi(os.Getenv("WORLD_SIZE"))
	if err != nil {
		return fmt.Errorf("WORLD_SIZE: %w", err)
	}
	rank, err := strconv.Atoi(os.Getenv("RANK"))
	if err != nil {
		return fmt.Errorf("RANK: %w", err)
	}
	fmt.Printf("rank %d of %d, master %s, node_rank %s, nnodes %s\n", rank, world, addr, os.Getenv("NODE_RANK"), os.Getenv("NNODES"))
	if rank == 0 {
		l, err := net.Listen("tcp", net.JoinHostPort("", os.Getenv("MASTER_PORT")))
		if err != nil {
			return err
		}
		defer l.Close()
		for met := 1; met < world; met++ {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return err
			}
			fmt.Printf("rank 0 met %s", line)
			fmt.Fprintf(c, "welcome\n")
			c.Close()
		}
		fmt.Println("all members met")
		return nil
	}
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		fmt.Fprintf(c, "rank %d\n", rank)
		reply, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			return err
		}
		fmt.Printf("rank %d got %s", rank, reply)
		return nil
	}
}
