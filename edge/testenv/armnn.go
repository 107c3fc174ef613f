package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// ArmNN returns the command prefix that runs the Arm NN oracle script
// (/usr/bin/python3 SHARED/oracle/armnn-run.py), or skips/fails the test when Debian's
// python3-pyarmnn, libarmnntfliteparser22 and libarmnn-cpuref-backend22 are not installed.
// Arm NN 20.08 reads only deprecated_builtin_code, fills int8 PAD with 0 and refuses bias
// tensors with quantized_dimension ≠ 0: see SHARED/oracle/README.md.
func ArmNN(t testing.TB) []string {
	t.Helper()
	const python = "/usr/bin/python3" // Debian's pyarmnn is built for the system Python
	script := SharedPath(t, "oracle", "armnn-run.py")
	if _, err := os.Stat(script); err != nil {
		Missing(t, "Arm NN runner %s: %v", script, err)
	}
	if err := exec.Command(python, "-c", "import pyarmnn").Run(); err != nil {
		Missing(t, "Arm NN python module (apt-get install -y python3-pyarmnn libarmnntfliteparser22 libarmnn-cpuref-backend22): %v", err)
	}
	return []string{python, script}
}
