package main

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// Two finelogd on one data dir would both ack pushes with the same seqs and
// lose one's rows at the next restart: the second must exit at once, non-zero,
// naming the dir and the first's pid. A holder killed with -9 leaves its lock
// file behind but never its lock, so a restart works.
func TestE2ESecondDaemonOnDataDirExits(t *testing.T) {
	dir := t.TempDir()
	first := start(t, dir, nil)
	bin := finelogdBinary(t)

	cmd := exec.Command(bin, "--listen", freePort(t), "--data-dir", dir)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("second finelogd on %s did not exit; output:\n%s", dir, out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("second finelogd: err %v, want a non-zero exit; output:\n%s", err, out)
	}
	want := regexp.MustCompile(fmt.Sprintf(`data dir %s is in use by another finelogd \(pid %d\)`,
		regexp.QuoteMeta(dir), first.cmd.Process.Pid))
	if !want.Match(out) {
		t.Fatalf("second finelogd output does not match %q:\n%s", want, out)
	}

	first.signal(syscall.SIGKILL)
	again := start(t, dir, nil)
	if code := again.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("restart after kill -9 exited %d", code)
	}
}
