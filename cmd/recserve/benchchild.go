package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// child is a "recserve serve" process under test.
type child struct {
	cmd   *exec.Cmd
	addr  chan string        // the gRPC address, once serving
	loads chan versionLoaded // "model version loaded" log lines
	done  chan struct{}      // closed when the process has exited
	err   error              // its exit status, once done is closed
}

type versionLoaded struct {
	Version     string  `json:"version"`
	LoadSeconds float64 `json:"load_seconds"`
	Index       string  `json:"index"` // "prebuilt" or "built..."
}

// startChild runs exe serve with args; logs, if not nil, receives its log.
func startChild(exe string, args []string, logs io.Writer) (*child, error) {
	cmd := exec.Command(exe, append([]string{"serve"}, args...)...)
	cmd.Stdout = logs
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, addr: make(chan string, 1), loads: make(chan versionLoaded, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if logs != nil {
				fmt.Fprintln(logs, sc.Text())
			}
			var line struct {
				Msg  string `json:"msg"`
				GRPC string `json:"grpc"`
				versionLoaded
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch line.Msg {
			case "serving":
				c.addr <- line.GRPC
			case "model version loaded":
				select {
				case c.loads <- line.versionLoaded:
				default:
				}
			}
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// waitServing waits for the serving log line, then for health SERVING.
func (c *child) waitServing(ctx context.Context) (string, error) {
	var addr string
	select {
	case addr = <-c.addr:
	case <-c.done:
		return "", fmt.Errorf("server exited before serving: %v", c.err)
	case <-ctx.Done():
		return "", ctx.Err()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	h := healthpb.NewHealthClient(conn)
	for {
		resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return addr, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("health never SERVING: %v %v", resp.GetStatus(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the server gracefully (SIGTERM), killing it after a minute.
func (c *child) stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	return c.err
}

// memory reads the resident set size and its peak (bytes) of a process.
func memory(pid int) (rss, hwm int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

// cpuTime returns the user+system CPU time a process has used so far, from
// /proc/<pid>/stat (in clock ticks of 1/100 s, the Linux USER_HZ).
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields resume after its ')'.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
