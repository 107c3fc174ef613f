package dicom

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// A Store SCP: the DICOM network service (PS3.8 upper layer, PS3.7 DIMSE C-ECHO and C-STORE)
// through which an X-ray unit or a PACS sends images to the device, as it would to any DICOM
// node. Each stored instance is handed to a StoreHandler as a Part 10 file; the C-STORE is
// answered "success" only after the handler returned without error, so an image the sender
// was told is stored has been recorded.

// UIDs of the SOP classes and the application context.
const (
	VerificationSOPClass  = "1.2.840.10008.1.1"
	CRImageStorage        = "1.2.840.10008.5.1.4.1.1.1"
	DXPresentationStorage = "1.2.840.10008.5.1.4.1.1.1.1"
	DXProcessingStorage   = "1.2.840.10008.5.1.4.1.1.1.1.1"
	SecondaryCaptureImage = "1.2.840.10008.5.1.4.1.1.7"
	applicationContext    = "1.2.840.10008.3.1.1.1"
	// ImplementationClassUID names this implementation in associations and file meta headers.
	ImplementationClassUID = "2.25.113234319563807148674024854763073382967"
	implementationVersion  = "CXR_EDGE_1"
)

// DIMSE statuses sent in C-STORE responses.
const (
	StatusSuccess          = 0x0000
	StatusOutOfResources   = 0xA700 // the handler failed (e.g. the store is full): send again later
	StatusSOPClassRefused  = 0x0122 // the command's SOP class is not the presentation context's
	StatusCannotUnderstand = 0xC000
)

// ErrAssociation wraps why an association was refused or ended abnormally (logged per
// connection; Serve itself only returns listener errors).
var ErrAssociation = errors.New("dicom: association")

// StoreRequest is one instance received by C-STORE.
type StoreRequest struct {
	CallingAE, Remote string
	SOPClassUID       string
	SOPInstanceUID    string // stays on the device, like every UID
	TransferSyntax    string
	File              []byte // a Part 10 file: preamble, file meta group, the dataset as received
}

// StoreHandler receives each stored instance; a nil error means it has been recorded.
type StoreHandler interface {
	Store(ctx context.Context, req StoreRequest) error
}

// StoreFunc adapts a function to StoreHandler.
type StoreFunc func(ctx context.Context, req StoreRequest) error

// Store calls f.
func (f StoreFunc) Store(ctx context.Context, req StoreRequest) error { return f(ctx, req) }

// ServerOptions configure a Store SCP. Zero fields take the defaults of DefaultServerOptions.
type ServerOptions struct {
	// AETitle is the device's own application entity title (default "CXR-EDGE"); an
	// association addressed to another called AE title is rejected.
	AETitle string
	// AllowedCallers, if not empty, are the only calling AE titles accepted.
	AllowedCallers []string
	// SOPClasses are the storage SOP classes accepted (default: CR, DX for presentation and
	// for processing, secondary capture). Verification (C-ECHO) is always accepted.
	SOPClasses []string
	// MaxPDU is the largest PDU this side receives, announced to the sender (default 64 KiB).
	MaxPDU uint32
	// MaxBytes bounds one instance (default 128 MiB, the decoder's file limit).
	MaxBytes int64
	// MaxAssociations bounds concurrent associations; further ones are rejected as transient
	// (default 4).
	MaxAssociations int
	// Timeout bounds the wait for each PDU and each write (default 60 s); an idle association
	// is closed.
	Timeout time.Duration
	Logger  *slog.Logger // default slog.Default()
}

// DefaultServerOptions returns the documented defaults.
func DefaultServerOptions() ServerOptions {
	return ServerOptions{
		AETitle:         "CXR-EDGE",
		SOPClasses:      []string{CRImageStorage, DXPresentationStorage, DXProcessingStorage, SecondaryCaptureImage},
		MaxPDU:          64 << 10,
		MaxBytes:        DefaultOptions().MaxFileSize,
		MaxAssociations: 4,
		Timeout:         60 * time.Second,
	}
}

func (o ServerOptions) withDefaults() ServerOptions {
	d := DefaultServerOptions()
	if o.AETitle == "" {
		o.AETitle = d.AETitle
	}
	if len(o.SOPClasses) == 0 {
		o.SOPClasses = d.SOPClasses
	}
	if o.MaxPDU == 0 {
		o.MaxPDU = d.MaxPDU
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = d.MaxBytes
	}
	if o.MaxAssociations <= 0 {
		o.MaxAssociations = d.MaxAssociations
	}
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// ValidAETitle reports whether s is a usable AE title: 1-16 characters of printable ASCII
// other than backslash, not all spaces.
func ValidAETitle(s string) bool {
	if len(s) == 0 || len(s) > 16 || strings.TrimSpace(s) == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return false
		}
	}
	return true
}

// Server is a Store SCP.
type Server struct {
	opts    ServerOptions
	handler StoreHandler
	slots   chan struct{}
}

// NewServer checks the options.
func NewServer(opts ServerOptions, h StoreHandler) (*Server, error) {
	opts = opts.withDefaults()
	if h == nil {
		return nil, errors.New("dicom: nil store handler")
	}
	if !ValidAETitle(opts.AETitle) {
		return nil, fmt.Errorf("dicom: AE title %q: want 1-16 printable ASCII characters, no backslash", opts.AETitle)
	}
	for _, c := range opts.AllowedCallers {
		if !ValidAETitle(c) {
			return nil, fmt.Errorf("dicom: allowed calling AE title %q: want 1-16 printable ASCII characters, no backslash", c)
		}
	}
	if opts.MaxPDU < minPDU || opts.MaxPDU > maxPDU {
		return nil, fmt.Errorf("dicom: max PDU %d: want %d to %d bytes", opts.MaxPDU, minPDU, maxPDU)
	}
	return &Server{opts: opts, handler: h, slots: make(chan struct{}, opts.MaxAssociations)}, nil
}

const (
	minPDU      = 4 << 10
	maxPDU      = 16 << 20
	maxRQLength = 64 << 10 // an A-ASSOCIATE-RQ is small
	maxCommand  = 64 << 10 // a command set is small
)

// Serve accepts associations on ln until ctx is cancelled (then it closes ln and waits for
// open associations to end, which they do at their next PDU or timeout). ln may be a TLS
// listener (DICOM's secure transport, PS3.15 B.1): the handshake is then bounded by
// Timeout, and the subject of the sender's certificate, if it gave one, is logged.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		conn, err := ln.Accept()
		if err != nil {
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			s.serveConn(ctx, conn)
		}()
	}
}

// PDU types (PS3.8 9.3).
const (
	pduAssociateRQ = 0x01
	pduAssociateAC = 0x02
	pduAssociateRJ = 0x03
	pduPData       = 0x04
	pduReleaseRQ   = 0x05
	pduReleaseRP   = 0x06
	pduAbort       = 0x07
)

// association is one connection's state.
type association struct {
	s        *Server
	conn     net.Conn
	calling  string
	contexts map[byte]presentationContext // accepted ones
}

type presentationContext struct {
	abstract, transfer string
}

// rejection is an A-ASSOCIATE-RJ: result, source, reason (PS3.8 9.3.4).
type rejection struct {
	result, source, reason byte
	why                    string
}

func (r *rejection) Error() string { return r.why }

func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	log := s.opts.Logger.With("remote", conn.RemoteAddr().String())
	if tc, ok := conn.(*tls.Conn); ok {
		peer, err := s.handshake(ctx, tc)
		if err != nil {
			log.Warn("dicom association", "err", err)
			return
		}
		log = log.With("tls_peer", peer)
	}
	a := &association{s: s, conn: conn}
	typ, body, err := a.read(maxRQLength)
	if err != nil {
		log.Warn("dicom association", "err", err)
		return
	}
	if typ != pduAssociateRQ {
		a.abort(2, 2) // unexpected PDU
		log.Warn("dicom association", "err", fmt.Errorf("%w: first PDU is type %#x, not A-ASSOCIATE-RQ", ErrAssociation, typ))
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		a.reject(&rejection{2, 3, 2, "too many associations"}) // transient, local limit exceeded
		log.Warn("dicom association refused", "why", "too many associations", "limit", s.opts.MaxAssociations)
		return
	}
	rq, err := parseAssociateRQ(body)
	if err != nil {
		a.reject(&rejection{1, 2, 1, err.Error()})
		log.Warn("dicom association refused", "err", err)
		return
	}
	a.calling = rq.calling
	log = log.With("calling_ae", rq.calling)
	if rej := s.check(rq); rej != nil {
		a.reject(rej)
		log.Warn("dicom association refused", "why", rej.why, "called_ae", rq.called)
		return
	}
	ac, accepted := s.negotiate(rq)
	a.contexts = accepted
	if err := a.write(pduAssociateAC, ac); err != nil {
		log.Warn("dicom association", "err", err)
		return
	}
	log.Info("dicom association accepted", "contexts", len(accepted), "proposed", len(rq.contexts))
	if err := a.serve(ctx, log); err != nil {
		log.Warn("dicom association ended", "err", err)
	}
}

// ServerTLS is the TLS set-up of a Store SCP for the secure transport profile (BCP 195: TLS 1.2
// or later): the device's certificate and key, and, when clientCAFile is given, a client
// certificate signed by one of its CAs required of every sender. DICOM itself authenticates
// no one (any AE title can be claimed), so the client certificate is what proves that the
// sender is the clinic's X-ray unit.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("dicom: TLS certificate: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("dicom: TLS client CA: %w", err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("dicom: TLS client CA %s: no PEM certificates", clientCAFile)
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// handshake completes TLS before the first PDU, so that a refused certificate is logged as
// such rather than as a failed read; it returns the subject of the peer's certificate ("" if
// none was asked for).
func (s *Server) handshake(ctx context.Context, tc *tls.Conn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return "", fmt.Errorf("%w: TLS handshake: %w", ErrAssociation, err)
	}
	if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
		return pc[0].Subject.String(), nil
	}
	return "", nil
}

// check applies the AE title and application context rules.
func (s *Server) check(rq *associateRQ) *rejection {
	switch {
	case rq.version&1 == 0:
		return &rejection{1, 2, 2, fmt.Sprintf("protocol version %#x not supported", rq.version)}
	case rq.appContext != applicationContext:
		return &rejection{1, 1, 2, fmt.Sprintf("application context %q not supported", rq.appContext)}
	case rq.called != s.opts.AETitle:
		return &rejection{1, 1, 7, fmt.Sprintf("called AE title %q is not this device's %q", rq.called, s.opts.AETitle)}
	case len(s.opts.AllowedCallers) > 0 && !slices.Contains(s.opts.AllowedCallers, rq.calling):
		return &rejection{1, 1, 3, fmt.Sprintf("calling AE title %q is not allowed", rq.calling)}
	}
	return nil
}

// acceptedSyntaxes are the transfer syntaxes a dataset may arrive in, most preferred first:
// uncompressed (lossless) before JPEG baseline, and deflated last (it costs an inflate).
var acceptedSyntaxes = []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, DeflatedExplicitVRLittleEndian}

// negotiate answers each proposed presentation context and builds the A-ASSOCIATE-AC body.
func (s *Server) negotiate(rq *associateRQ) ([]byte, map[byte]presentationContext) {
	accepted := map[byte]presentationContext{}
	var items []byte
	items = appendItem(items, 0x10, []byte(applicationContext))
	for _, pc := range rq.contexts {
		result, ts := byte(3), ImplicitVRLittleEndian // abstract syntax not supported
		if pc.abstract == VerificationSOPClass || slices.Contains(s.opts.SOPClasses, pc.abstract) {
			result = 4 // transfer syntaxes not supported
			for _, want := range acceptedSyntaxes {
				if slices.Contains(pc.transfers, want) {
					result, ts = 0, want
					accepted[pc.id] = presentationContext{pc.abstract, want}
					break
				}
			}
		}
		sub := appendItem([]byte{pc.id, 0, result, 0}, 0x40, []byte(ts))
		items = appendItem(items, 0x21, sub)
	}
	var user []byte
	user = appendItem(user, 0x51, binary.BigEndian.AppendUint32(nil, s.opts.MaxPDU))
	user = appendItem(user, 0x52, []byte(ImplementationClassUID))
	user = appendItem(user, 0x55, []byte(implementationVersion))
	items = appendItem(items, 0x50, user)

	body := make([]byte, 0, 68+len(items))
	body = binary.BigEndian.AppendUint16(body, 1) // protocol version
	body = append(body, 0, 0)
	body = append(body, aeField(rq.called)...)
	body = append(body, aeField(rq.calling)...)
	body = append(body, make([]byte, 32)...)
	return append(body, items...), accepted
}

func appendItem(dst []byte, typ byte, content []byte) []byte {
	dst = append(dst, typ, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(content)))
	return append(dst, content...)
}

func aeField(s string) []byte {
	f := []byte("                ")
	copy(f, s)
	return f
}

// associateRQ is what this SCP reads from an A-ASSOCIATE-RQ.
type associateRQ struct {
	version         uint16
	called, calling string
	appContext      string
	contexts        []proposedContext
	// The sender's maximum PDU length (user information) is not kept: every PDU this SCP
	// sends (AC, RJ, responses, release) is far below the 4 KiB minimum a peer may announce.
}

type proposedContext struct {
	id        byte
	abstract  string
	transfers []string
}

// parseAssociateRQ reads an A-ASSOCIATE-RQ body (after the PDU header); every length is
// checked against the bytes that remain.
func parseAssociateRQ(b []byte) (*associateRQ, error) {
	if len(b) < 68 {
		return nil, fmt.Errorf("%w: A-ASSOCIATE-RQ of %d bytes, want at least 68", ErrAssociation, len(b))
	}
	rq := &associateRQ{
		version: binary.BigEndian.Uint16(b),
		called:  strings.TrimSpace(string(b[4:20])),
		calling: strings.TrimSpace(string(b[20:36])),
	}
	err := walkItems(b[68:], func(typ byte, c []byte) error {
		switch typ {
		case 0x10:
			rq.appContext = uidString(c)
		case 0x20:
			if len(c) < 4 {
				return fmt.Errorf("%w: presentation context item of %d bytes", ErrAssociation, len(c))
			}
			pc := proposedContext{id: c[0]}
			err := walkItems(c[4:], func(st byte, v []byte) error {
				switch st {
				case 0x30:
					pc.abstract = uidString(v)
				case 0x40:
					pc.transfers = append(pc.transfers, uidString(v))
				}
				return nil
			})
			if err != nil {
				return err
			}
			if pc.id%2 == 0 || len(rq.contexts) >= 128 {
				return fmt.Errorf("%w: presentation context id %d (want odd, at most 128 contexts)", ErrAssociation, pc.id)
			}
			rq.contexts = append(rq.contexts, pc)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !ValidAETitle(rq.called) || !ValidAETitle(rq.calling) {
		return nil, fmt.Errorf("%w: AE titles %q and %q: want 1-16 printable ASCII characters", ErrAssociation, rq.called, rq.calling)
	}
	return rq, nil
}

// walkItems calls f for each item (type, reserved, 2-byte length, content) of b.
func walkItems(b []byte, f func(typ byte, content []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("%w: %d stray bytes after the last item", ErrAssociation, len(b))
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if 4+n > len(b) {
			return fmt.Errorf("%w: item %#x of %d bytes overruns its PDU", ErrAssociation, b[0], n)
		}
		if err := f(b[0], b[4:4+n]); err != nil {
			return err
		}
		b = b[4+n:]
	}
	return nil
}

// uidString trims the padding (NUL or space) of a UID value.
func uidString(b []byte) string { return strings.TrimRight(string(b), "\x00 ") }

// read reads one PDU whose body is at most limit bytes.
func (a *association) read(limit uint32) (byte, []byte, error) {
	a.conn.SetReadDeadline(time.Now().Add(a.s.opts.Timeout))
	var h [6]byte
	if _, err := io.ReadFull(a.conn, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[2:])
	if n > limit {
		a.abort(2, 6) // invalid PDU parameter value
		return 0, nil, fmt.Errorf("%w: PDU type %#x of %d bytes exceeds the %d announced", ErrAssociation, h[0], n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(a.conn, body); err != nil {
		return 0, nil, fmt.Errorf("%w: PDU type %#x truncated: %w", ErrAssociation, h[0], err)
	}
	return h[0], body, nil
}

func (a *association) write(typ byte, body []byte) error {
	a.conn.SetWriteDeadline(time.Now().Add(a.s.opts.Timeout))
	pdu := append([]byte{typ, 0}, binary.BigEndian.AppendUint32(nil, uint32(len(body)))...)
	_, err := a.conn.Write(append(pdu, body...))
	return err
}

func (a *association) reject(r *rejection) {
	_ = a.write(pduAssociateRJ, []byte{0, r.result, r.source, r.reason})
}

func (a *association) abort(source, reason byte) { _ = a.write(pduAbort, []byte{0, 0, source, reason}) }

// message is a DIMSE message being assembled from PDVs.
type message struct {
	pc       byte
	command  []byte
	cmd      command // parsed once the command set is complete
	data     []byte
	hasData  bool
	tooLarge bool
	cmdDone  bool
}

// serve runs the association after A-ASSOCIATE-AC until release, abort or error.
func (a *association) serve(ctx context.Context, log *slog.Logger) error {
	var m message
	for {
		typ, body, err := a.read(a.s.opts.MaxPDU)
		if err != nil {
			return err
		}
		switch typ {
		case pduReleaseRQ:
			return a.write(pduReleaseRP, make([]byte, 4))
		case pduAbort:
			return fmt.Errorf("%w: aborted by the sender", ErrAssociation)
		case pduPData:
		default:
			a.abort(2, 2)
			return fmt.Errorf("%w: unexpected PDU type %#x", ErrAssociation, typ)
		}
		for len(body) > 0 {
			if len(body) < 6 {
				a.abort(2, 6)
				return fmt.Errorf("%w: PDV header of %d bytes", ErrAssociation, len(body))
			}
			n := binary.BigEndian.Uint32(body)
			if n < 2 || uint64(n) > uint64(len(body)-4) {
				a.abort(2, 6)
				return fmt.Errorf("%w: PDV of %d bytes in %d", ErrAssociation, n, len(body)-4)
			}
			pc, ctrl, frag := body[4], body[5], body[6:4+n]
			body = body[4+n:]
			if _, ok := a.contexts[pc]; !ok {
				a.abort(2, 6)
				return fmt.Errorf("%w: PDV on presentation context %d, which was not accepted", ErrAssociation, pc)
			}
			if err := a.pdv(ctx, log, &m, pc, ctrl, frag); err != nil {
				return err
			}
		}
	}
}

// pdv adds one fragment to the message and, when the message is complete, answers it.
func (a *association) pdv(ctx context.Context, log *slog.Logger, m *message, pc, ctrl byte, frag []byte) error {
	isCommand, last := ctrl&1 != 0, ctrl&2 != 0
	if m.command != nil || m.data != nil || m.cmdDone {
		if pc != m.pc {
			a.abort(2, 6)
			return fmt.Errorf("%w: a message continues on presentation context %d after %d", ErrAssociation, pc, m.pc)
		}
	}
	m.pc = pc
	switch {
	case isCommand && !m.cmdDone:
		if len(m.command)+len(frag) > maxCommand {
			a.abort(2, 6)
			return fmt.Errorf("%w: command set over %d bytes", ErrAssociation, maxCommand)
		}
		m.command = append(m.command, frag...)
		if !last {
			return nil
		}
		m.cmdDone = true
		cmd, err := parseCommand(m.command)
		if err != nil {
			a.abort(2, 6)
			return err
		}
		m.cmd, m.hasData = cmd, cmd.dataSetType != noDataSet
		if m.hasData {
			return nil // the data set follows
		}
		return a.answer(ctx, log, m)
	case !isCommand && m.cmdDone && m.hasData:
		if !m.tooLarge {
			if int64(len(m.data)+len(frag)) > a.s.opts.MaxBytes {
				m.tooLarge, m.data = true, nil // keep reading to the last fragment, then refuse
			} else {
				m.data = append(m.data, frag...)
			}
		}
		if !last {
			return nil
		}
		return a.answer(ctx, log, m)
	default:
		a.abort(2, 6)
		return fmt.Errorf("%w: unexpected %s fragment", ErrAssociation, map[bool]string{true: "command", false: "data set"}[isCommand])
	}
}

// answer handles a complete message and sends its response; m is reset.
func (a *association) answer(ctx context.Context, log *slog.Logger, m *message) error {
	id, pc, cmd := m.pc, a.contexts[m.pc], m.cmd
	data, tooLarge := m.data, m.tooLarge
	*m = message{}
	switch cmd.field {
	case cEchoRQ:
		return a.respond(id, cmd, cEchoRSP, StatusSuccess, "")
	case cStoreRQ:
	default:
		a.abort(2, 6)
		return fmt.Errorf("%w: DIMSE command %#04x not supported (only C-ECHO and C-STORE)", ErrAssociation, cmd.field)
	}
	status, comment := uint16(StatusSuccess), ""
	switch {
	case cmd.sopClass != pc.abstract:
		status, comment = StatusSOPClassRefused, "SOP class differs from the presentation context's"
	case tooLarge:
		status, comment = StatusOutOfResources, fmt.Sprintf("instance larger than %d bytes", a.s.opts.MaxBytes)
	case len(data) == 0:
		status, comment = StatusCannotUnderstand, "empty data set"
	default:
		req := StoreRequest{CallingAE: a.calling, Remote: a.conn.RemoteAddr().String(), SOPClassUID: cmd.sopClass,
			SOPInstanceUID: cmd.sopInstance, TransferSyntax: pc.transfer, File: partTen(cmd, pc.transfer, a.calling, data)}
		if err := a.s.handler.Store(ctx, req); err != nil {
			status, comment = StatusOutOfResources, "not recorded, send again later"
			log.Error("dicom store", "err", err)
		}
	}
	log.Info("dicom C-STORE", "status", fmt.Sprintf("%#04x", status), "bytes", len(data), "transfer_syntax", pc.transfer, "comment", comment)
	return a.respond(id, cmd, cStoreRSP, status, comment)
}

// respond sends a response command set (no data set) on presentation context id.
func (a *association) respond(id byte, rq command, field uint16, status uint16, comment string) error {
	var els []byte
	els = appendUIElement(els, 0x0002, rq.sopClass)
	els = appendUS(els, 0x0100, field)
	els = appendUS(els, 0x0120, rq.messageID)
	els = appendUS(els, 0x0800, noDataSet)
	els = appendUS(els, 0x0900, status)
	if comment != "" {
		if len(comment) > 64 {
			comment = comment[:64]
		}
		els = appendElement(els, 0x0902, padEven([]byte(comment), ' '))
	}
	if rq.sopInstance != "" {
		els = appendUIElement(els, 0x1000, rq.sopInstance)
	}
	set := appendElement(nil, 0x0000, binary.LittleEndian.AppendUint32(nil, uint32(len(els))))
	set = append(set, els...)
	// One PDV, command, last fragment; responses are far below any peer's maximum PDU.
	pdv := binary.BigEndian.AppendUint32(nil, uint32(2+len(set)))
	pdv = append(pdv, id, 0x03)
	return a.write(pduPData, append(pdv, set...))
}

// DIMSE command fields (PS3.7 E.1).
const (
	cStoreRQ  = 0x0001
	cStoreRSP = 0x8001
	cEchoRQ   = 0x0030
	cEchoRSP  = 0x8030
	noDataSet = 0x0101
)

// command holds the command set elements this SCP uses.
type command struct {
	field, messageID, dataSetType uint16
	sopClass, sopInstance         string
}

// parseCommand reads a command set (group 0000, implicit VR little endian).
func parseCommand(b []byte) (command, error) {
	var c command
	seen := false
	for len(b) > 0 {
		if len(b) < 8 {
			return c, fmt.Errorf("%w: command set ends inside an element header", ErrAssociation)
		}
		group, elem, n := binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])
		if group != 0 || uint64(n) > uint64(len(b)-8) {
			return c, fmt.Errorf("%w: command element (%04x,%04x) of %d bytes in %d", ErrAssociation, group, elem, n, len(b)-8)
		}
		v := b[8 : 8+n]
		b = b[8+n:]
		us := func() uint16 {
			if len(v) < 2 {
				return 0
			}
			return binary.LittleEndian.Uint16(v)
		}
		switch elem {
		case 0x0002:
			c.sopClass = uidString(v)
		case 0x0100:
			c.field, seen = us(), true
		case 0x0110:
			c.messageID = us()
		case 0x0800:
			c.dataSetType = us()
		case 0x1000:
			c.sopInstance = uidString(v)
		}
	}
	if !seen {
		return c, fmt.Errorf("%w: command set without a command field", ErrAssociation)
	}
	return c, nil
}

func appendElement(dst []byte, elem uint16, v []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, 0)
	dst = binary.LittleEndian.AppendUint16(dst, elem)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}

func appendUS(dst []byte, elem, v uint16) []byte {
	return appendElement(dst, elem, binary.LittleEndian.AppendUint16(nil, v))
}

func appendUIElement(dst []byte, elem uint16, uid string) []byte {
	return appendElement(dst, elem, padEven([]byte(uid), 0))
}

func padEven(b []byte, pad byte) []byte {
	if len(b)%2 == 1 {
		b = append(b, pad)
	}
	return b
}

// partTen wraps a received data set in a Part 10 file: preamble, "DICM" and the file meta
// group (explicit VR little endian), then the data set exactly as it arrived.
func partTen(cmd command, transfer, calling string, data []byte) []byte {
	var meta bytes.Buffer
	el := func(elem uint16, vr string, v []byte) {
		binary.Write(&meta, binary.LittleEndian, [2]uint16{2, elem})
		meta.WriteString(vr)
		if vr == "OB" {
			meta.Write([]byte{0, 0})
			binary.Write(&meta, binary.LittleEndian, uint32(len(v)))
		} else {
			binary.Write(&meta, binary.LittleEndian, uint16(len(v)))
		}
		meta.Write(v)
	}
	el(0x0001, "OB", []byte{0, 1})
	el(0x0002, "UI", padEven([]byte(cmd.sopClass), 0))
	el(0x0003, "UI", padEven([]byte(cmd.sopInstance), 0))
	el(0x0010, "UI", padEven([]byte(transfer), 0))
	el(0x0012, "UI", padEven([]byte(ImplementationClassUID), 0))
	el(0x0013, "SH", padEven([]byte(implementationVersion), ' '))
	if calling != "" {
		el(0x0016, "AE", padEven([]byte(calling), ' '))
	}
	out := make([]byte, 128, 128+4+12+meta.Len()+len(data))
	out = append(out, "DICM"...)
	out = append(out, 2, 0, 0, 0, 'U', 'L', 4, 0)
	out = binary.LittleEndian.AppendUint32(out, uint32(meta.Len()))
	out = append(out, meta.Bytes()...)
	return append(out, data...)
}
