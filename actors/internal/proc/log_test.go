package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLog_Rotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.log")
	l, err := OpenLog(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 39) + "\n")
	for range 6 {
		if n, err := l.Write(line); n != len(line) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if n, err := l.Write(line); n != len(line) || err != nil {
		t.Fatalf("Write after Close = %d, %v; want the output dropped quietly", n, err)
	}
	for file, want := range map[string]int{path: 80, path + ".1": 80} {
		if st, err := os.Stat(file); err != nil || st.Size() != int64(want) {
			t.Fatalf("%s: %v, %v; want %d bytes", file, st, err, want)
		}
	}
}

func TestLog_OpenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.log")
	if err := os.WriteFile(path, []byte("before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLog(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fmt.Fprintln(l, "after")
	if got := l.Tail(5); !reflect.DeepEqual(got, []string{"before", "after"}) {
		t.Fatalf("Tail = %q, want the earlier content kept", got)
	}
	if l.Path() != path {
		t.Fatalf("Path = %q, want %q", l.Path(), path)
	}
	if _, err := OpenLog(filepath.Join(path, "not-a-dir", "run.log"), 0); err == nil {
		t.Fatal("OpenLog under a file succeeded")
	}
}

func TestLog_Tail(t *testing.T) {
	lines := func(from, to int) []string {
		var s []string
		for i := from; i <= to; i++ {
			s = append(s, fmt.Sprintf("line %d", i))
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		max   int64
		write func(l *Log)
		n     int
		want  []string
	}{
		{"empty", 0, func(*Log) {}, 3, nil},
		{"fewer lines than asked", 0, func(l *Log) { fmt.Fprint(l, "a\nb\n") }, 5, []string{"a", "b"}},
		{"last lines", 0, func(l *Log) {
			for _, s := range lines(1, 30) {
				fmt.Fprintln(l, s)
			}
		}, 3, lines(28, 30)},
		{"a last line without newline", 0, func(l *Log) { fmt.Fprint(l, "a\nb\nc") }, 2, []string{"b", "c"}},
		{"notes and blank lines left out", 0, func(l *Log) {
			l.Note("started %q", "train.py")
			fmt.Fprint(l, "epoch 1\n\n   \n")
			l.Note("stopping")
			fmt.Fprint(l, "Traceback: CUDA out of memory\n")
			l.Note("exited: exit status 1")
		}, 5, []string{"epoch 1", "Traceback: CUDA out of memory"}},
		{"reaches into the rotated file", 60, func(l *Log) {
			for _, s := range lines(1, 12) { // 7 bytes a line: rotated after 8
				fmt.Fprintln(l, s)
			}
		}, 6, lines(7, 12)},
		{"only the end of a long log", 0, func(l *Log) {
			fmt.Fprintln(l, "first")
			fmt.Fprintln(l, strings.Repeat("y", tailWindow))
			fmt.Fprintln(l, "last")
		}, 5, []string{"last"}},
		{"none asked", 0, func(l *Log) { fmt.Fprintln(l, "a") }, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := OpenLog(filepath.Join(t.TempDir(), "run.log"), tc.max)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			tc.write(l)
			if got := l.Tail(tc.n); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Tail(%d) = %q, want %q", tc.n, got, tc.want)
			}
		})
	}
}
