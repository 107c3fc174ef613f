package testenv

import (
	"errors"
	"fmt"
	"io"
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
	conf string // mosquitto.conf with %d for the port
	Port int

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	started bool          // listened once: Port is fixed from then on (clients reconnect to it)
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
	return mosquittoOn(t, opts, FreePort(t))
}

// mosquittoOn is Mosquitto with the first port to try.
func mosquittoOn(t testing.TB, opts BrokerOptions, port int) *Broker {
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
	b := &Broker{t: t, bin: bin, dir: t.TempDir(), Port: port}
	// Run as root, mosquitto drops to the "mosquitto" user, which cannot write its
	// persistence file into the test's private temp dir: a restarted broker would come back
	// empty. Keep it as the invoking user.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root\n"
	}
	b.conf = user + "listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location " +
		strings.ReplaceAll(b.dir, "%", "%%") + "/\nautosave_interval 1\nlog_dest stderr\nlog_type error\nlog_type warning\n" +
		strings.ReplaceAll(opts.ExtraConfig, "%", "%%") + "\n"
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

// URL is the broker address in paho form, tcp://127.0.0.1:PORT.
func (b *Broker) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", b.Port) }

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return fmt.Sprintf("127.0.0.1:%d", b.Port) }

// Start runs the broker (again) and waits until it accepts connections. FreePort's port is
// only free when picked: if another process takes it before the first start binds it, the
// broker is started on another port (up to 5 times). A restart keeps its port.
func (b *Broker) Start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return
	}
	for attempt := 1; ; attempt++ {
		err := b.startLocked()
		if err == nil {
			b.started = true
			return
		}
		if b.started || attempt == 5 || !errors.Is(err, errPortTaken) {
			b.t.Fatal(err)
		}
		b.t.Logf("%v; trying another port", err)
		b.Port = FreePort(b.t)
	}
}

// errPortTaken: mosquitto could not bind its listener.
var errPortTaken = errors.New("port in use")

// startLocked writes the configuration for b.Port, runs mosquitto and waits until it listens
// or exits.
func (b *Broker) startLocked() error {
	conf := filepath.Join(b.dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(b.conf, b.Port)), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(b.bin, "-c", conf)
	log := &LogBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			if strings.Contains(log.String(), "Address already in use") {
				return fmt.Errorf("mosquitto on %s: %w\n%s", b.Addr(), errPortTaken, log.String())
			}
			return fmt.Errorf("mosquitto exited before listening on %s:\n%s", b.Addr(), log.String())
		default:
		}
		err := mqttPing(b.Addr())
		if err == nil {
			b.cmd, b.exited = cmd, exited
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("mosquitto did not listen on %s: %v\n%s", b.Addr(), err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mqttPing connects to addr and checks that an MQTT broker answers a CONNECT with a CONNACK
// (whatever its return code): a bare TCP connect would also succeed against another process
// that holds the port.
func mqttPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	// MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keep-alive 10 s, empty
	// client id; then DISCONNECT.
	connect := []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 10, 0, 0}
	if _, err := c.Write(connect); err != nil {
		return err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		return fmt.Errorf("no CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 2 {
		return fmt.Errorf("not an MQTT broker: answered % x", ack)
	}
	_, _ = c.Write([]byte{0xe0, 0})
	return nil
}

// Stop terminates the broker (SIGTERM, so it saves its persistence file) and waits for it.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(os.Interrupt)
	select {
	case <-b.exited:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
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
