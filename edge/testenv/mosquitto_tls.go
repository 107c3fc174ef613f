package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSBroker is a real Mosquitto broker with, besides its plain listener, a TLS listener
// that requires a client certificate signed by a CA generated for the test.
type TLSBroker struct {
	*Broker
	// PKI holds the CA the listener trusts, the broker's certificate, a client certificate
	// the CA signed and one from an unrelated CA, which the broker must refuse.
	*PKI
	TLSPort int
}

// TLSURL is the TLS listener in paho form, ssl://127.0.0.1:PORT.
func (b *TLSBroker) TLSURL() string { return fmt.Sprintf("ssl://127.0.0.1:%d", b.TLSPort) }

// MosquittoTLS starts Mosquitto with a TLS listener (require_certificate true) on a free
// port, using a CA, server and client certificates generated with crypto/x509.
func MosquittoTLS(t testing.TB) *TLSBroker {
	t.Helper()
	// Mosquitto started as root drops to the mosquitto user before loading certificates,
	// so they live in a world-readable directory (test-only keys) rather than t.TempDir.
	dir, err := os.MkdirTemp("", "cxr-mosquitto-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pki := NewPKI(t, dir)
	port := FreePort(t)
	conf := fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
		port, pki.CAFile, pki.ServerCert, pki.ServerKey)
	b := Mosquitto(t, BrokerOptions{ExtraConfig: conf})
	return &TLSBroker{Broker: b, PKI: pki, TLSPort: port}
}

// PKI is a test certificate authority with a server and a client certificate it signed,
// and a client certificate from an unrelated CA, all PEM files for 127.0.0.1/localhost.
type PKI struct {
	CAFile                string // the CA certificate (trust anchor for both sides)
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	OtherCert, OtherKey   string // signed by another CA, to be refused
}

// NewPKI generates a PKI with crypto/x509 and writes its files into dir.
func NewPKI(t testing.TB, dir string) *PKI {
	t.Helper()
	ca, caKey := newCert(t, dir, "ca", nil, nil, true)
	newCert(t, dir, "server", ca, caKey, false)
	newCert(t, dir, "client", ca, caKey, false)
	other, otherKey := newCert(t, dir, "otherca", nil, nil, true)
	newCert(t, dir, "other", other, otherKey, false)
	p := func(name string) string { return filepath.Join(dir, name) }
	return &PKI{CAFile: p("ca.pem"), ServerCert: p("server.pem"), ServerKey: p("server.key"),
		ClientCert: p("client.pem"), ClientKey: p("client.key"), OtherCert: p("other.pem"), OtherKey: p("other.key")}
}

// newCert writes NAME.pem and NAME.key into dir: a CA when isCA, else a leaf for
// 127.0.0.1/localhost usable by servers and clients, signed by parent.
func newCert(t testing.TB, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "cxr-edge test " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".pem", "CERTIFICATE", der)
	write(name+".key", "EC PRIVATE KEY", keyDER)
	return cert, key
}
