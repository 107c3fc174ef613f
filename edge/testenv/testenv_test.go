package testenv

import (
	"net"
	"os"
	"testing"
)

func TestSharedHasModelsAndData(t *testing.T) {
	for _, p := range []string{"models/README.md", "data/DATA.md", "oracle/setup-litert.sh"} {
		if _, err := os.Stat(SharedPath(t, p)); err != nil {
			t.Errorf("shared file %s: %v", p, err)
		}
	}
}

func TestMosquittoStopStart(t *testing.T) {
	b := Mosquitto(t, BrokerOptions{})
	dial := func() error {
		c, err := net.Dial("tcp", b.Addr())
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("broker not reachable: %v", err)
	}
	b.Stop()
	if dial() == nil {
		t.Fatal("broker still reachable after Stop")
	}
	b.Start()
	if err := dial(); err != nil {
		t.Fatalf("broker not reachable after restart: %v", err)
	}
}

// A port taken between FreePort and the broker's bind costs a retry on another port, not
// the test.
func TestMosquittoPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	b := mosquittoOn(t, BrokerOptions{}, taken)
	if b.Port == taken {
		t.Fatalf("broker reports the taken port %d", taken)
	}
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatalf("broker not reachable on %s: %v", b.Addr(), err)
	}
	c.Close()
}
