package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Broker is a real Mosquitto broker on a free loopback port, owned by one test.
// It can be stopped and started again on the same port to simulate an outage.
type Broker struct {
	t    testing.TB
	bin  string
	dir  string
	Port int

	mu  sync.Mutex
	cmd *exec.Cmd
}

// BrokerOptions configures a test broker. The zero value gives an anonymous, plain-TCP,
// persistent (across Stop/Start) broker.
type BrokerOptions struct {
	// ExtraConfig is appended to the generated mosquitto.conf (e.g. TLS listener lines).
	ExtraConfig string
}

// Mosquitto starts Debian's mosquitto on 127.0.0.1 at a free port and stops it when the test
// ends. It skips (locally) or fails (CI) when mosquitto is not installed.
func Mosquitto(t testing.TB, opts BrokerOptions) *Broker {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/bin/mosquitto"} {
			if _, statErr := os.Stat(p); statErr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		Missing(t, "mosquitto (apt-get install mosquitto)")
	}
	b := &Broker{t: t, bin: bin, dir: t.TempDir(), Port: FreePort(t)}
	// Run as root, mosquitto drops to the "mosquitto" user, which cannot write its
	// persistence file into the test's private temp dir: a restarted broker would come back
	// empty. Keep it as the invoking user.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root\n"
	}
	conf := fmt.Sprintf("%slistener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nautosave_interval 1\nlog_dest stderr\nlog_type error\nlog_type warning\n%s\n",
		user, b.Port, b.dir, opts.ExtraConfig)
	if err := os.WriteFile(filepath.Join(b.dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

// URL is the broker address in paho form, tcp://127.0.0.1:PORT.
func (b *Broker) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", b.Port) }

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return fmt.Sprintf("127.0.0.1:%d", b.Port) }

// Start runs the broker (again) and waits until it accepts connections.
func (b *Broker) Start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return
	}
	cmd := exec.Command(b.bin, "-c", filepath.Join(b.dir, "mosquitto.conf"))
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	b.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto did not listen on %s: %v\n%s", b.Addr(), err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop terminates the broker (SIGTERM, so it saves its persistence file) and waits for it.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
	b.cmd = nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
