package memlimit

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// fakeRoot writes files under a temporary root: path -> content.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCgroupLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"v2 in a namespace", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "2147483648\n",
		}, 2 << 30},
		{"v2 unlimited", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "max\n",
		}, 0},
		{"v2 parent smaller", map[string]string{
			"proc/self/cgroup":                           "0::/kubepods/pod1/ctr\n",
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.max": "3000000000\n",
			"sys/fs/cgroup/kubepods/pod1/memory.max":     "2500000000\n",
			"sys/fs/cgroup/kubepods/memory.max":          "max\n",
		}, 2500000000},
		{"v1 hybrid", map[string]string{
			"proc/self/cgroup": "9:pids:/\n4:memory:/process_api/abc\n0::/\n",
			"sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "1073741824\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":                 "9223372036854771712\n",
		}, 1 << 30},
		{"v1 unlimited", map[string]string{
			"proc/self/cgroup":                           "4:cpu,memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0},
		{"no cgroups", map[string]string{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cgroupLimit(fakeRoot(t, tc.files)); got != tc.want {
				t.Errorf("limit %d, want %d", got, tc.want)
			}
		})
	}
}

func TestInUseCountsTouchedNotFreedMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("InUse reads /proc")
	}
	before := InUse()
	b := make([]byte, 64<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	peak := InUse()
	runtime.KeepAlive(b)
	// The race detector's shadow of the slice is resident too, and stays.
	if grown := peak - before; grown < 56<<20 {
		t.Errorf("InUse grew by %d MiB after touching 64 MiB", grown>>20)
	}
	b = nil
	runtime.GC() // the 64 MiB become free heap the runtime may reuse, resident or not
	if fell := peak - InUse(); fell < 48<<20 {
		t.Errorf("InUse fell by %d MiB once the 64 MiB were freed", fell>>20)
	}
}
