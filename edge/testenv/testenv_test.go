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
