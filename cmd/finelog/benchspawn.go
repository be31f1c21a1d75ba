package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// spawned is a throw-away finelogd that `bench --spawn` starts for a clean
// measurement: its own empty data dir and port, stopped and deleted after.
type spawned struct {
	cmd     *exec.Cmd
	dataDir string
	addr    string
	exited  chan error
}

// findFinelogd picks the daemon binary: the flag, else a finelogd next to
// this finelog, else one on PATH.
func findFinelogd(flagPath string) (string, error) {
	if flagPath != "" {
		return flagPath, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "finelogd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("finelogd")
	if err != nil {
		return "", errors.New("--spawn: no finelogd next to finelog or on PATH; pass --finelogd PATH (go build -o finelogd ./cmd/finelogd)")
	}
	return p, nil
}

// spawnFinelogd starts bin on a free loopback port with a fresh data dir
// and waits until /health answers 200. Its log goes to logw.
func spawnFinelogd(ctx context.Context, bin string, logw io.Writer) (*spawned, error) {
	dir, err := os.MkdirTemp("", "finelog-bench-")
	if err != nil {
		return nil, fmt.Errorf("--spawn: data dir: %w", err)
	}
	// Reserve a port, release it, hand it over: a tiny race with other
	// listeners, acceptable for a measurement tool.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("--spawn: pick a port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--listen", addr, "--data-dir", dir, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logw, logw
	// No inherited policy: the throw-away daemon admits loopback only.
	cmd.Env = append(os.Environ(), "FINELOG_AUTH_POLICY=")
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("--spawn: start %s: %w", bin, err)
	}
	s := &spawned{cmd: cmd, dataDir: dir, addr: "http://" + addr, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(s.addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case err := <-s.exited:
			s.exited <- err
			s.stop()
			return nil, fmt.Errorf("--spawn: %s exited before it was ready: %v", bin, err)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("--spawn: %s not healthy at %s after 30s", bin, s.addr)
		}
	}
}

func (s *spawned) pid() int { return s.cmd.Process.Pid }

// stop shuts the daemon down gracefully and deletes its data dir.
func (s *spawned) stop() {
	s.shutdown()
	os.RemoveAll(s.dataDir)
}

// shutdown stops the daemon gracefully (SIGTERM, then kill after 30 s)
// and reports whether it exited by itself. Calling it again is a no-op.
func (s *spawned) shutdown() (graceful bool) {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		s.exited <- err
		return err == nil
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		err := <-s.exited
		s.exited <- err
		return false
	}
}

// restingBytes stops the daemon gracefully, which flushes its last
// memtable into a segment and leaves no WAL, and returns the data dir's
// size then: what the rows take at rest, where settledBytes still counts
// the memtable's WAL until the flush interval passes. ok is false when
// the daemon had to be killed.
func (s *spawned) restingBytes() (n int64, ok bool) {
	ok = s.shutdown()
	return dirBytes(s.dataDir), ok
}

// settleTimeout bounds how long bench waits for the spawned daemon's data
// dir to stop changing after the last push (flush and compaction run in
// the background).
const settleTimeout = 2 * time.Minute

// settledBytes waits until the data dir's total size is the same in three
// samples a second apart, or until timeout, and returns that size.
func (s *spawned) settledBytes(ctx context.Context, timeout time.Duration) (int64, time.Duration) {
	start := time.Now()
	last, same := dirBytes(s.dataDir), 0
	for same < 2 && time.Since(start) < timeout && ctx.Err() == nil {
		time.Sleep(time.Second)
		n := dirBytes(s.dataDir)
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last, time.Since(start)
}

// dirBytes is the total size of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if info, err := e.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
