package main

import (
	"fmt"
	"io"
	"os"
)

func snapshotSaveCommand() *command {
	usage := "Usage: kiln snapshot save [-address ADDR] FILE\n\n  Saves the registry (a consistent read) to FILE."
	return &command{synopsis: "Save the registry to a file", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("snapshot save")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		resp, err := c.raw("GET", "/v1/snapshot?consistency=consistent", nil)
		if err != nil {
			return fail(err)
		}
		defer resp.Body.Close()
		tmp := fs.Arg(0) + ".part"
		f, err := os.Create(tmp)
		if err != nil {
			return fail(err)
		}
		n, err := io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return fail(fmt.Errorf("snapshot save: %w", err))
		}
		if err := os.Rename(tmp, fs.Arg(0)); err != nil {
			return fail(err)
		}
		fmt.Printf("Saved snapshot to %s (%d bytes, index %s)\n", fs.Arg(0), n, resp.Header.Get("X-Kiln-Index"))
		return 0
	}}
}

func snapshotRestoreCommand() *command {
	usage := "Usage: kiln snapshot restore [-address ADDR] FILE\n\n  Replaces the registry with the snapshot in FILE, on every node."
	return &command{synopsis: "Restore the registry from a file", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("snapshot restore")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		c.http.Timeout = 0
		resp, err := c.raw("PUT", "/v1/snapshot", f)
		if err != nil {
			return fail(err)
		}
		resp.Body.Close()
		fmt.Printf("Restored snapshot from %s\n", fs.Arg(0))
		return 0
	}}
}
