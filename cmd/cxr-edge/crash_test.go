package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// kill -9 while the hot folder is being worked through: after a restart every image has
// exactly one result and every file is in done/; nothing is lost or scored twice.
func TestDaemonSurvivesSIGKILL(t *testing.T) {
	state := t.TempDir()
	inbox := filepath.Join(state, "inbox")
	env := []string{
		"CXR_MODEL_PATH=" + model(t),
		"CXR_STORE_DIR=" + filepath.Join(state, "store"),
		"CXR_INTAKE_WATCH_DIR=" + inbox,
		"CXR_INTAKE_SETTLE=50ms",
		"CXR_INDICATOR_KIND=none",
	}
	d := startDaemon(t, env)
	dir := testenv.SharedPath(t, "data", "fullres", "PNEUMONIA")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents[:8] {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(inbox, "."+e.Name()+".part")
		if err := os.WriteFile(tmp, data, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(inbox, e.Name())); err != nil {
			t.Fatal(err)
		}
		names = append(names, e.Name())
	}
	results := func(url string) []telemetry.Result {
		var list struct{ Results []telemetry.Result }
		getJSON(t, url+"/v1/results?limit=100", &list)
		return list.Results
	}
	waitFor(t, "a first result", func() bool { return len(results(d.url)) >= 1 })
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	done, _ := os.ReadDir(filepath.Join(inbox, "done"))
	t.Logf("killed with %d of %d files in done/", len(done), len(names))

	d2 := startDaemon(t, env)
	waitFor(t, "every file in done/", func() bool {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(inbox, "done", n)); err != nil {
				return false
			}
		}
		return true
	})
	rs := results(d2.url)
	ids := map[string]int{}
	for _, r := range rs {
		ids[r.ID]++
		if r.Label == telemetry.LabelUnreadable {
			t.Errorf("unreadable after the crash: %+v", r)
		}
	}
	if len(rs) != len(names) || len(ids) != len(names) {
		t.Errorf("%d results for %d distinct ids, want %d each", len(rs), len(ids), len(names))
	}
	left, _ := os.ReadDir(inbox)
	for _, e := range left {
		if e.Type().IsRegular() {
			t.Errorf("left in the inbox: %s", e.Name())
		}
	}
	d2.stop(t)
}
