package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/pflag"

	"github.com/cxr-edge/cxr-edge/edge/device"
	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// demoMarker marks a folder made by `cxr-edge demo`: only such a folder is reset at start.
const demoMarker = ".cxr-demo"

// Defaults of the demo's own flags.
const (
	demoDefaultDir    = "cxr-demo"
	demoDefaultListen = "127.0.0.1:8080"
	demoDefaultMQTT   = "127.0.0.1:1883"
	demoDefaultDICOM  = "127.0.0.1:11112"
)

// demoOptions are the demo's flags after parsing.
type demoOptions struct {
	dir, drop, listen, mqttListen, dicomListen string
	exitAfterDrop                              bool
}

// cmdDemo runs the real daemon (device.Run, as `run` does) in a local folder with the
// embedded model, the console indicator, the HTTP screen and, when no broker is configured,
// the embedded MQTT broker; an MQTT subscriber in the same process prints each result as it
// arrives on the result topic. --drop copies a folder of images into the hot folder.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("cxr-edge demo", pflag.ContinueOnError)
	fs.String("config", "", "configuration file (default: ./cxr-edge.yaml, then /etc/cxr-edge/cxr-edge.yaml)")
	fs.StringArray("set", nil, "override any key: --set model.threshold=0.4 (repeatable)")
	fs.String("model", "", "model.path: a .tflite model (default: the embedded model)")
	fs.String("threshold", "", "model.threshold: operating point in (0,1)")
	fs.String("broker", "", "mqtt.broker: use this broker instead of the embedded one")
	fs.String("log-level", "", "log.level of the daemon's log (demo default: warn)")
	var o demoOptions
	fs.StringVar(&o.dir, "dir", demoDefaultDir, "demo folder: <dir>/inbox is the hot folder, <dir>/store the result store; reset at each start")
	fs.StringVar(&o.drop, "drop", "", "copy the images of this folder (recursively) into the inbox once the daemon runs")
	fs.StringVar(&o.listen, "listen", demoDefaultListen, "HTTP address of the screen and API")
	fs.StringVar(&o.mqttListen, "mqtt-listen", demoDefaultMQTT, "address of the embedded MQTT broker (when no broker is configured)")
	fs.StringVar(&o.dicomListen, "dicom-listen", demoDefaultDICOM, "address of the DICOM Store SCP (\"\" = off): send with storescu -aec CXR-EDGE HOST PORT FILE.dcm")
	fs.BoolVar(&o.exitAfterDrop, "exit-after-drop", false, "exit once every dropped image's result has arrived over MQTT")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cxr-edge demo: unexpected arguments %q (use --drop DIR)\n", fs.Args())
		return exitUsage
	}
	if o.exitAfterDrop && o.drop == "" {
		fmt.Fprintln(stderr, "cxr-edge demo: --exit-after-drop needs --drop DIR")
		return exitUsage
	}
	cfg, err := loadConfig(fs)
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge:", err)
		return exitUsage
	}
	var images []string
	if o.drop != "" {
		if images, err = demoImages(o.drop, stderr); err != nil {
			fmt.Fprintln(stderr, "cxr-edge demo: --drop:", err)
			return exitUsage
		}
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge demo: --dir:", err)
		return exitUsage
	}
	cfg.Store.Dir = filepath.Join(dir, "store")
	cfg.Intake.WatchDir = filepath.Join(dir, "inbox")
	cfg.Intake.HTTPListen = o.listen
	cfg.Intake.DICOMListen = o.dicomListen
	cfg.Indicator.Kind = "console"
	if cfg.MQTT.Broker == "" {
		cfg.MQTT.Embedded, cfg.MQTT.EmbeddedListen = true, o.mqttListen
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "cxr-edge demo:", err)
		return exitUsage
	}
	// A busy port is the likeliest failure on a developer's machine: say which flag moves it.
	type port struct{ flag, addr, example string }
	ports := []port{{"--listen", cfg.Intake.HTTPListen, "127.0.0.1:18080"}}
	if cfg.MQTT.Embedded {
		ports = append(ports, port{"--mqtt-listen", cfg.MQTT.EmbeddedListen, "127.0.0.1:11883"})
	}
	if cfg.Intake.DICOMListen != "" {
		ports = append(ports, port{"--dicom-listen", cfg.Intake.DICOMListen, "127.0.0.1:11113"})
	}
	for _, p := range ports {
		if err := portFree(p.addr); err != nil {
			fmt.Fprintf(stderr, "cxr-edge demo: cannot listen on %s: %v\n  (is another cxr-edge or broker running?) choose another address with %s, e.g. %s %s\n",
				p.addr, err, p.flag, p.flag, p.example)
			return exitFailed
		}
	}

	// Only now, with nothing left to refuse, is the demo folder (re)made.
	if err := resetDemoDir(dir); err != nil {
		fmt.Fprintln(stderr, "cxr-edge demo:", err)
		return exitUsage
	}

	logCfg := cfg.Log
	if f := fs.Lookup("log-level"); f == nil || !f.Changed {
		logCfg.Level = "warn" // the demo's own lines and the indicator tell the story
	}
	log := device.NewLogger(logCfg, stderr)
	topics, err := telemetry.NewTopics(cfg.MQTT.TopicPrefix, cfg.Device.Site, cfg.Device.ID)
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge demo:", err)
		return exitUsage
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan device.Listening, 1)
	runErr := make(chan error, 1)
	go func() {
		runErr <- device.Run(ctx, cfg, device.DaemonOptions{
			Version: Version(), Logger: log, Console: stderr,
			Ready: func(l device.Listening) { ready <- l },
		})
	}()
	var listening device.Listening
	select {
	case listening = <-ready:
	case err := <-runErr:
		fmt.Fprintln(stderr, "cxr-edge demo:", demoHint(err))
		return exitFailed
	}
	// The embedded broker's bound address (a port the kernel chose for ":0"), else the configured broker.
	broker := cfg.MQTT.Broker
	if broker == "" {
		broker = "tcp://" + listening.MQTT
	}

	out := &lockedWriter{w: stdout}
	sub, err := subscribeResults(ctx, broker, cfg.MQTT, topics.Result(), out)
	if err != nil {
		cancel()
		<-runErr
		fmt.Fprintln(stderr, "cxr-edge demo:", err)
		return exitFailed
	}
	defer sub.close()
	// The subscriber leaves as soon as the demo stops, before the daemon closes the broker.
	go func() { <-ctx.Done(); sub.close() }()

	ref := "embedded model"
	if m, err := device.EmbeddedModelRef(); err == nil && cfg.Model.Path == "" {
		ref = fmt.Sprintf("%s, sha256 %.12s…", m.Name, m.SHA256)
	} else if cfg.Model.Path != "" {
		ref = cfg.Model.Path
	}
	fmt.Fprintf(out, "cxr-edge demo running (%s)\n", ref)
	fmt.Fprintf(out, "  screen:      http://%s/\n", listening.HTTP)
	fmt.Fprintf(out, "  hot folder:  %s  (drop JPEG, PNG or DICOM files here; write elsewhere, then move in)\n", cfg.Intake.WatchDir)
	if listening.DICOM != "" {
		host, p, _ := net.SplitHostPort(listening.DICOM)
		fmt.Fprintf(out, "  DICOM:       AE title %s at %s  (storescu -aec %s %s %s FILE.dcm)\n",
			cfg.Intake.DICOMAETitle, listening.DICOM, cfg.Intake.DICOMAETitle, host, p)
	}
	fmt.Fprintf(out, "  MQTT:        %s, results on topic %s\n", broker, topics.Result())
	fmt.Fprintf(out, "  drop more:   cp IMAGE.jpeg %s/\n", cfg.Intake.WatchDir)
	fmt.Fprintln(out, "  stop:        Ctrl-C")

	if len(images) > 0 {
		// Announced first: results start arriving while the rest are still being copied.
		fmt.Fprintf(out, "dropping %d images from %s into the hot folder; results arrive over MQTT:\n", len(images), o.drop)
		n, err := dropImages(ctx, images, o.drop, cfg.Intake.WatchDir)
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(stderr, "cxr-edge demo: --drop: %v (%d of %d dropped)\n", err, n, len(images))
		}
		if o.exitAfterDrop {
			select {
			case <-sub.reached(n):
				fmt.Fprintf(out, "all %d results arrived; stopping\n", n)
				cancel()
			case <-ctx.Done():
			case err := <-runErr:
				fmt.Fprintln(stderr, "cxr-edge demo:", demoHint(err))
				return exitFailed
			}
		}
	}
	err = <-runErr
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge demo:", demoHint(err))
		return exitFailed
	}
	fmt.Fprintf(out, "stopped; results and inputs are kept in %s until the next demo\n", dir)
	return exitOK
}

// demoHint adds the flag to change when the daemon could not bind its port.
func demoHint(err error) string {
	if errors.Is(err, syscall.EADDRINUSE) {
		return err.Error() + "\n  the port is in use: choose another with --listen or --mqtt-listen"
	}
	return err.Error()
}

// portFree reports whether addr can be listened on now.
func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// resetDemoDir makes dir an empty demo folder. A folder made by an earlier demo (it holds the
// marker) is cleared, so each run starts with an empty store and every dropped image gives
// a new result; any other non-empty folder is refused rather than deleted.
func resetDemoDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("--dir %s: %w", dir, err)
	case len(ents) > 0:
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return fmt.Errorf("--dir %s exists and was not made by cxr-edge demo (no %s file); choose another folder", dir, demoMarker)
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("resetting %s: %w", dir, err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, demoMarker), []byte("made by cxr-edge demo; cleared at each start\n"), 0o640)
}

// demoImages lists the files under root that are images the daemon reads (JPEG, PNG, DICOM
// by content), in a stable order; others are named on w and skipped, and so are copies of
// an earlier file (the daemon answers a duplicate from its store without a new result).
func demoImages(root string, w io.Writer) ([]string, error) {
	var files []string
	seen := map[[sha256.Size]byte]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		head, err := readHead(path, 512)
		if err != nil {
			return err
		}
		if intake.Sniff(head) == "" {
			fmt.Fprintf(w, "cxr-edge demo: skipping %s: not a JPEG, PNG or DICOM file\n", path)
			return nil
		}
		sum, err := fileSum(path)
		if err != nil {
			return err
		}
		if first, dup := seen[sum]; dup {
			fmt.Fprintf(w, "cxr-edge demo: skipping %s: same content as %s\n", path, first)
			return nil
		}
		seen[sum] = path
		files = append(files, path)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no JPEG, PNG or DICOM files", root)
	}
	sort.Strings(files)
	return files, nil
}

func fileSum(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:k], nil
}

// dropImages copies each file into inbox the way a producer must: written under a name the
// hot folder ignores (".name.tmp"), then renamed in. Names keep their sub-folder
// (NORMAL/a.jpeg → NORMAL_a.jpeg) so equal names in different folders do not collide.
func dropImages(ctx context.Context, files []string, root, inbox string) (int, error) {
	n := 0
	for _, src := range files {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		rel, err := filepath.Rel(root, src)
		if err != nil {
			rel = filepath.Base(src)
		}
		name := strings.ReplaceAll(filepath.ToSlash(rel), "/", "_")
		tmp := filepath.Join(inbox, "."+name+".tmp")
		if err := copyFile(src, tmp); err != nil {
			return n, err
		}
		if err := os.Rename(tmp, filepath.Join(inbox, name)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// resultPrinter prints each result arriving on the result topic as one line and counts them.
type resultPrinter struct {
	client paho.Client
	out    io.Writer

	mu      sync.Mutex
	count   int
	waiters []countWaiter
	closed  bool
}

type countWaiter struct {
	n  int
	ch chan struct{}
}

// subscribeResults connects an MQTT client to broker and prints every result on topic.
func subscribeResults(ctx context.Context, broker string, mc device.MQTTConfig, topic string, out io.Writer) (*resultPrinter, error) {
	p := &resultPrinter{out: out}
	opts := paho.NewClientOptions().AddBroker(broker).
		SetClientID(fmt.Sprintf("cxr-edge-demo-%d", os.Getpid())).
		SetConnectRetry(true).SetAutoReconnect(true)
	if mc.Username != "" {
		opts.SetUsername(mc.Username)
		if mc.PasswordFile != "" {
			pw, err := os.ReadFile(mc.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("mqtt.password_file: %w", err)
			}
			opts.SetPassword(strings.TrimSpace(string(pw)))
		}
	}
	// Subscribe again after a reconnect; the handler is the same.
	opts.SetOnConnectHandler(func(c paho.Client) { c.Subscribe(topic, 1, p.handle) })
	p.client = paho.NewClient(opts)
	tok := p.client.Connect()
	select {
	case <-tok.Done():
	case <-time.After(15 * time.Second):
	case <-ctx.Done():
	}
	if !p.client.IsConnected() {
		p.client.Disconnect(0)
		return nil, fmt.Errorf("MQTT subscriber: cannot connect to %s: %v", broker, tok.Error())
	}
	st := p.client.Subscribe(topic, 1, p.handle)
	if !st.WaitTimeout(15*time.Second) || st.Error() != nil {
		p.client.Disconnect(0)
		return nil, fmt.Errorf("MQTT subscriber: subscribing to %s: %v", topic, st.Error())
	}
	return p, nil
}

func (p *resultPrinter) handle(_ paho.Client, m paho.Message) {
	var r telemetry.Result
	line := ""
	if err := json.Unmarshal(m.Payload(), &r); err != nil {
		line = fmt.Sprintf("mqtt %s: not a result document: %v", m.Topic(), err)
	} else {
		line = resultLine(r)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count++
	fmt.Fprintln(p.out, line)
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if p.count >= w.n {
			close(w.ch)
			continue
		}
		kept = append(kept, w)
	}
	p.waiters = kept
}

// reached returns a channel closed once n results have arrived.
func (p *resultPrinter) reached(n int) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan struct{})
	if p.count >= n {
		close(ch)
		return ch
	}
	p.waiters = append(p.waiters, countWaiter{n: n, ch: ch})
	return ch
}

func (p *resultPrinter) close() {
	p.mu.Lock()
	closed := p.closed
	p.closed = true
	p.mu.Unlock()
	if !closed {
		p.client.Disconnect(250)
	}
}

// resultLine is how the demo shows a result: the payload names no file (no personal data
// leaves the device), so the id prefix identifies it.
func resultLine(r telemetry.Result) string {
	id := r.ID
	if len(id) > 12 {
		id = id[:12]
	}
	size := "-"
	if r.Image.Width > 0 {
		size = fmt.Sprintf("%dx%d", r.Image.Width, r.Image.Height)
	}
	if r.Label == telemetry.LabelUnreadable {
		return fmt.Sprintf("mqtt result %s  %-10s  %s  reason: %s", id, r.Label, size, r.Reason)
	}
	cmp := "<"
	if r.Score >= r.Threshold {
		cmp = ">="
	}
	t := r.TimingsMs
	return fmt.Sprintf("mqtt result %s  %-10s  score %.4f %-2s threshold %.4f  %s  decode %.1f ms, preprocess %.1f ms, infer %.1f ms, total %.1f ms",
		id, r.Label, r.Score, cmp, r.Threshold, size, t.Decode, t.Preprocess, t.Infer, t.Total)
}

// lockedWriter serialises the demo's lines with the subscriber's.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
