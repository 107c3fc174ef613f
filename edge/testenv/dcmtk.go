package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// DCMTK runs one of Debian's dcmtk tools (img2dcm, dcmdjpeg, dcmconv, dcmodify, dcmcrle,
// dcm2pnm, dump2dcm, ...) with args and returns its combined output. A missing tool skips the
// test locally and fails it in CI (apt-get install dcmtk); a non-zero exit fails the test.
func DCMTK(t testing.TB, tool string, args ...string) string {
	t.Helper()
	bin := LookPath(t, tool)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}
