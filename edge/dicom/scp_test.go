package dicom

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// scp is a running Store SCP that keeps what it was sent.
type scp struct {
	port string
	mu   sync.Mutex
	got  []StoreRequest
	fail error // returned by the handler when set
}

func (s *scp) Store(_ context.Context, r StoreRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.got = append(s.got, r)
	return nil
}

func (s *scp) received() []StoreRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StoreRequest(nil), s.got...)
}

func startSCP(t *testing.T, opts ServerOptions) *scp {
	t.Helper()
	return startSCPOn(t, opts, nil)
}

// startSCPOn starts an SCP on a local port whose listener wrap (if not nil) may replace,
// e.g. by a TLS listener.
func startSCPOn(t *testing.T, opts ServerOptions, wrap func(net.Listener) net.Listener) *scp {
	t.Helper()
	s := &scp{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := NewServer(opts, s)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, s.port, _ = net.SplitHostPort(ln.Addr().String())
	if wrap != nil {
		ln = wrap(ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// dcmtkNet runs a dcmtk network client (echoscu, storescu) and returns its output and
// whether it succeeded; unlike testenv.DCMTK a failure is an outcome to check, not a fatal.
func dcmtkNet(t *testing.T, tool string, args ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command(testenv.LookPath(t, tool), args...).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s: %v", tool, err)
	}
	return string(out), err == nil
}

// storeFiles makes the files an X-ray unit might send, from a full-resolution original:
// JPEG baseline (img2dcm, secondary capture), and uncompressed explicit, implicit and deflated
// copies (dcmdjpeg, dcmconv); plus the real CR file (ACR-NEMA, given a meta header by dcmconv).
func storeFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	src := testenv.SharedPath(t, "data", "fullres", "NORMAL", "IM-0149-0001.jpeg")
	testenv.DCMTK(t, "img2dcm", "-q", src, p("jpeg.dcm"))
	testenv.DCMTK(t, "dcmdjpeg", "-q", p("jpeg.dcm"), p("explicit.dcm"))
	testenv.DCMTK(t, "dcmconv", "-q", "+ti", p("explicit.dcm"), p("implicit.dcm"))
	testenv.DCMTK(t, "dcmconv", "-q", "+td", p("explicit.dcm"), p("deflated.dcm"))
	testenv.DCMTK(t, "dcmconv", "-q", "-f", "+F", crPath(t), p("cr.dcm"))
	return map[string]string{"jpeg": p("jpeg.dcm"), "explicit": p("explicit.dcm"), "implicit": p("implicit.dcm"),
		"deflated": p("deflated.dcm"), "cr": p("cr.dcm")}
}

// TestStoreSCPWithDcmtk: dcmtk's echoscu and storescu, real DICOM network clients, verify and
// store through the SCP; every file received decodes to the pixels of the file sent.
func TestStoreSCPWithDcmtk(t *testing.T) {
	s := startSCP(t, ServerOptions{AETitle: "CXR-EDGE"})
	files := storeFiles(t)
	if out, ok := dcmtkNet(t, "echoscu", "-aet", "XRAY1", "-aec", "CXR-EDGE", "127.0.0.1", s.port); !ok {
		t.Fatalf("echoscu: %s", out)
	}
	tests := []struct {
		file string
		args []string
		ts   string // negotiated
	}{
		{"explicit", nil, ExplicitVRLittleEndian},
		{"implicit", []string{"-xi"}, ImplicitVRLittleEndian},
		{"deflated", []string{"-xd"}, DeflatedExplicitVRLittleEndian},
		{"jpeg", []string{"-xy"}, JPEGBaseline8Bit},
		{"cr", nil, ImplicitVRLittleEndian}, // 16-bit CR, sent as stored
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			before := len(s.received())
			args := append(append([]string{"-aet", "XRAY1", "-aec", "CXR-EDGE"}, tc.args...), "127.0.0.1", s.port, files[tc.file])
			if out, ok := dcmtkNet(t, "storescu", args...); !ok {
				t.Fatalf("storescu %s: %s", strings.Join(args, " "), out)
			}
			got := s.received()
			if len(got) != before+1 {
				t.Fatalf("%d instances stored, want 1", len(got)-before)
			}
			r := got[len(got)-1]
			if r.TransferSyntax != tc.ts || r.CallingAE != "XRAY1" || r.SOPInstanceUID == "" {
				t.Errorf("received %s from %q (instance %q), want %s", r.TransferSyntax, r.CallingAE, r.SOPInstanceUID, tc.ts)
			}
			img, err := Decode(r.File, Options{})
			if err != nil {
				t.Fatalf("the received file does not decode: %v", err)
			}
			want := mustDecodeFile(t, files[tc.file])
			if !slices.Equal(grey16(img.Gray), grey16(want.Gray)) || img.Info.Rows != want.Info.Rows {
				t.Error("received pixels differ from the file sent")
			}
			if img.Info.TransferSyntax != tc.ts {
				t.Errorf("file meta says %s, want %s", img.Info.TransferSyntax, tc.ts)
			}
		})
	}
}

// TestStoreSCPRefusals: what the SCP refuses, dcmtk's clients report, and nothing is stored.
func TestStoreSCPRefusals(t *testing.T) {
	files := storeFiles(t)
	ct := filepath.Join(t.TempDir(), "ct.dcm")
	testenv.DCMTK(t, "dcmconv", "-q", files["explicit"], ct)
	testenv.DCMTK(t, "dcmodify", "-nb", "-q", "-m", "(0008,0016)=1.2.840.10008.5.1.4.1.1.2", ct)
	tests := []struct {
		name  string
		opts  ServerOptions
		fail  error
		tool  string
		args  []string
		wants []string // in dcmtk's output (lower case)
	}{
		{"called AE title", ServerOptions{}, nil, "echoscu", []string{"-aet", "XRAY1", "-aec", "PACS"}, []string{"called ae title not recognized"}},
		{"calling AE title not allowed", ServerOptions{AllowedCallers: []string{"XRAY1"}}, nil, "echoscu", []string{"-aet", "ROGUE", "-aec", "CXR-EDGE"}, []string{"calling ae title not recognized"}},
		{"SOP class (CT)", ServerOptions{}, nil, "storescu", []string{"-aet", "XRAY1", "-aec", "CXR-EDGE", ct}, []string{"no presentation context"}},
		{"larger than MaxBytes", ServerOptions{MaxBytes: 100_000}, nil, "storescu", []string{"-aet", "XRAY1", "-aec", "CXR-EDGE", files["explicit"]}, []string{"refused: outofresources"}},
		{"handler failed", ServerOptions{}, errors.New("disk full"), "storescu", []string{"-aet", "XRAY1", "-aec", "CXR-EDGE", files["explicit"]}, []string{"refused: outofresources"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSCP(t, tc.opts)
			s.mu.Lock()
			s.fail = tc.fail
			s.mu.Unlock()
			args := append(tc.args[:len(tc.args):len(tc.args)], "127.0.0.1", s.port)
			if tc.tool == "storescu" { // the file goes last
				n := len(tc.args)
				args = append(append(tc.args[:n-1:n-1], "127.0.0.1", s.port), tc.args[n-1])
			}
			out, ok := dcmtkNet(t, tc.tool, append([]string{"-v"}, args...)...)
			if ok {
				t.Errorf("%s succeeded", tc.tool)
			}
			for _, w := range tc.wants {
				if !strings.Contains(strings.ToLower(out), w) {
					t.Errorf("%s output lacks %q (exit ok %v):\n%s", tc.tool, w, ok, out)
				}
			}
			if n := len(s.received()); n != 0 {
				t.Errorf("%d instances stored", n)
			}
		})
	}
}

// associateRQ builds an A-ASSOCIATE-RQ PDU proposing each abstract syntax with its transfer
// syntaxes (context ids 1, 3, 5, …).
func associateRQPDU(called, calling string, proposals ...[]string) []byte {
	var items []byte
	items = appendItem(items, 0x10, []byte(applicationContext))
	for i, p := range proposals {
		sub := appendItem([]byte{byte(2*i + 1), 0, 0, 0}, 0x30, []byte(p[0]))
		for _, ts := range p[1:] {
			sub = appendItem(sub, 0x40, []byte(ts))
		}
		items = appendItem(items, 0x20, sub)
	}
	items = appendItem(items, 0x50, appendItem(nil, 0x51, []byte{0, 0, 0x40, 0}))
	body := append([]byte{0, 1, 0, 0}, aeField(called)...)
	body = append(append(body, aeField(calling)...), make([]byte, 32)...)
	return pdu(pduAssociateRQ, append(body, items...))
}

func pdu(typ byte, body []byte) []byte {
	return append(append([]byte{typ, 0}, byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))), body...)
}

// echoPDU is a P-DATA-TF with a C-ECHO-RQ on context 1.
func echoPDU() []byte {
	var els []byte
	els = appendUIElement(els, 0x0002, VerificationSOPClass)
	els = appendUS(els, 0x0100, cEchoRQ)
	els = appendUS(els, 0x0110, 7)
	els = appendUS(els, 0x0800, noDataSet)
	set := append(appendElement(nil, 0x0000, []byte{byte(len(els)), byte(len(els) >> 8), 0, 0}), els...)
	pdv := append([]byte{0, 0, 0, byte(2 + len(set)), 1, 3}, set...)
	return pdu(pduPData, pdv)
}

// exchange sends raw PDUs to the server over an in-memory connection and returns all it
// answered until it closed the connection.
func exchange(t testing.TB, srv *Server, in []byte) []byte {
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() { srv.serveConn(context.Background(), server); close(done) }()
	var out []byte
	read := make(chan struct{})
	go func() { out, _ = io.ReadAll(client); close(read) }()
	client.SetWriteDeadline(time.Now().Add(2 * time.Second))
	client.Write(in)
	<-done // the server ends at EOF, its timeout or a protocol error
	client.Close()
	<-read
	return out
}

func TestNegotiation(t *testing.T) {
	srv, err := NewServer(ServerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: time.Second}, StoreFunc(func(context.Context, StoreRequest) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	rq := associateRQPDU("CXR-EDGE", "XRAY1",
		[]string{VerificationSOPClass, ImplicitVRLittleEndian},
		[]string{CRImageStorage, "1.2.840.10008.1.2.4.80", JPEGBaseline8Bit, ImplicitVRLittleEndian, ExplicitVRLittleEndian}, // JPEG-LS, baseline, uncompressed
		[]string{DXPresentationStorage, "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"},                                  // JPEG-LS and JPEG 2000 only
		[]string{"1.2.840.10008.5.1.4.1.1.2", ExplicitVRLittleEndian},                                                        // CT
	)
	out := exchange(t, srv, append(append(rq, echoPDU()...), pdu(pduReleaseRQ, make([]byte, 4))...))
	if len(out) < 6 || out[0] != pduAssociateAC {
		t.Fatalf("answer %x, want an A-ASSOCIATE-AC", out[:min(len(out), 16)])
	}
	n := int(out[2])<<24 | int(out[3])<<16 | int(out[4])<<8 | int(out[5])
	results := map[byte]string{}
	walkItems(out[6+68:6+n], func(typ byte, c []byte) error {
		if typ == 0x21 {
			ts := ""
			walkItems(c[4:], func(_ byte, v []byte) error { ts = string(v); return nil })
			results[c[0]] = fmt.Sprint(c[2], " ", ts)
		}
		return nil
	})
	want := map[byte]string{1: "0 " + ImplicitVRLittleEndian, 3: "0 " + ExplicitVRLittleEndian, 5: "4 " + ImplicitVRLittleEndian, 7: "3 " + ImplicitVRLittleEndian}
	if fmt.Sprint(results) != fmt.Sprint(want) {
		t.Errorf("presentation context results %v, want %v", results, want)
	}
	rest := out[6+n:]
	if len(rest) < 6 || rest[0] != pduPData || !bytes.Contains(rest, []byte{0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x30, 0x80}) {
		t.Errorf("no C-ECHO-RSP after the AC: %x", rest)
	}
	if last := rest[len(rest)-10:]; last[0] != pduReleaseRP {
		t.Errorf("association not released: ends %x", last)
	}
}

// TestAssociationLimit: beyond MaxAssociations a caller is told to come back later (transient
// rejection), not left waiting.
func TestAssociationLimit(t *testing.T) {
	s := startSCP(t, ServerOptions{MaxAssociations: 1})
	c, err := net.Dial("tcp", "127.0.0.1:"+s.port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(associateRQPDU("CXR-EDGE", "HOLDER", []string{VerificationSOPClass, ImplicitVRLittleEndian}))
	ac := make([]byte, 1)
	if _, err := io.ReadFull(c, ac); err != nil || ac[0] != pduAssociateAC {
		t.Fatalf("first association: %x %v", ac, err)
	}
	out, ok := dcmtkNet(t, "echoscu", "-aet", "XRAY1", "-aec", "CXR-EDGE", "127.0.0.1", s.port)
	if ok || !strings.Contains(strings.ToLower(out), "local limit exceeded") {
		t.Errorf("second association while the limit is used: ok %v\n%s", ok, out)
	}
}

// TestStoreSCPOverTLS: over a TLS listener (ServerTLS with a client CA) dcmtk's echoscu with
// a certificate from that CA is answered, one without a certificate is not, a connection
// that never starts the handshake is closed after Timeout instead of being held, and the
// set-up's errors say which file is at fault.
func TestStoreSCPOverTLS(t *testing.T) {
	pki := testenv.NewPKI(t, t.TempDir())
	cfg, err := ServerTLS(pki.ServerCert, pki.ServerKey, pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	s := startSCPOn(t, ServerOptions{Timeout: 300 * time.Millisecond}, func(ln net.Listener) net.Listener { return tls.NewListener(ln, cfg) })
	if out, ok := dcmtkNet(t, "echoscu", "+tls", pki.ClientKey, pki.ClientCert, "+cf", pki.CAFile, "-aec", "CXR-EDGE", "127.0.0.1", s.port); !ok {
		t.Errorf("echoscu with the CA's certificate:\n%s", out)
	}
	if out, ok := dcmtkNet(t, "echoscu", "+tla", "+cf", pki.CAFile, "-aec", "CXR-EDGE", "127.0.0.1", s.port); ok {
		t.Errorf("echoscu without a certificate was answered:\n%s", out)
	}

	c, err := net.Dial("tcp", "127.0.0.1:"+s.port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("a silent connection: read %v, want EOF (closed by the SCP after its timeout)", err)
	}

	for _, tc := range []struct {
		name, cert, key, ca, want string
	}{
		{"no certificate file", "/nonexistent/cert.pem", pki.ServerKey, "", "TLS certificate"},
		{"key of another certificate", pki.ServerCert, pki.OtherKey, "", "TLS certificate"},
		{"no client CA file", pki.ServerCert, pki.ServerKey, "/nonexistent/ca.pem", "TLS client CA"},
		{"client CA file without certificates", pki.ServerCert, pki.ServerKey, pki.ServerKey, "no PEM certificates"},
	} {
		if _, err := ServerTLS(tc.cert, tc.key, tc.ca); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if cfg.MinVersion < tls.VersionTLS12 || cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("TLS set-up: min version %#x, client auth %v", cfg.MinVersion, cfg.ClientAuth)
	}
}

// FuzzSCP: no byte stream from the network makes the SCP panic or hang, and whatever it
// hands on is a Part 10 file.
func FuzzSCP(f *testing.F) {
	rq := associateRQPDU("CXR-EDGE", "XRAY1", []string{VerificationSOPClass, ImplicitVRLittleEndian}, []string{CRImageStorage, ExplicitVRLittleEndian})
	f.Add(rq)
	f.Add(append(append(rq, echoPDU()...), pdu(pduReleaseRQ, make([]byte, 4))...))
	var store []byte
	store = appendUIElement(store, 0x0002, CRImageStorage)
	store = appendUS(store, 0x0100, cStoreRQ)
	store = appendUS(store, 0x0110, 1)
	store = appendUS(store, 0x0800, 0)
	store = appendUIElement(store, 0x1000, "1.2.3")
	cmd := append(appendElement(nil, 0x0000, []byte{byte(len(store)), 0, 0, 0}), store...)
	data := appendElement(nil, 0x0010, []byte("x\x00"))
	msg := append(pdu(pduPData, append([]byte{0, 0, 0, byte(2 + len(cmd)), 3, 3}, cmd...)),
		pdu(pduPData, append([]byte{0, 0, 0, byte(2 + len(data)), 3, 2}, data...))...)
	f.Add(append(rq, msg...))
	f.Add([]byte{1, 0, 0, 0, 0, 4, 0, 1, 0, 0})
	f.Add(pdu(pduAbort, make([]byte, 4)))
	f.Fuzz(func(t *testing.T, in []byte) {
		srv, err := NewServer(ServerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: 200 * time.Millisecond, MaxBytes: 1 << 20},
			StoreFunc(func(_ context.Context, r StoreRequest) error {
				if len(r.File) < 132 || string(r.File[128:132]) != "DICM" || r.SOPClassUID == "" {
					t.Errorf("handed on a request that is not a Part 10 file of a SOP class: %+v", r)
				}
				return nil
			}))
		if err != nil {
			t.Fatal(err)
		}
		// The sender hangs up after its bytes, as a broken or hostile one would.
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() { srv.serveConn(context.Background(), server); close(done) }()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(time.Second))
		client.Write(in)
		client.Close()
		<-done
	})
}
