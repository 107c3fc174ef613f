package testenv

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// NetCutter is a dialer for MQTT clients under test that can cut their connections the way
// a network failure does (no DISCONNECT, so the broker publishes the Last Will) and keep
// the network down for a while. Use its Dial as the client's dial function.
type NetCutter struct {
	mu      sync.Mutex
	conns   []*cutConn
	blocked atomic.Bool
}

// ErrNetCut is what a cut connection reports, and what Dial returns while blocked.
var ErrNetCut = errors.New("testenv: network cut by the test")

// Dial connects like net.Dialer unless the network is blocked.
func (c *NetCutter) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.blocked.Load() {
		return nil, ErrNetCut
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cc := &cutConn{Conn: conn}
	c.mu.Lock()
	c.conns = append(c.conns, cc)
	c.mu.Unlock()
	return cc, nil
}

// Block makes Dial fail (true) or work again (false).
func (c *NetCutter) Block(on bool) { c.blocked.Store(on) }

// CutAll closes every connection dialled so far; their reads and writes fail with ErrNetCut.
func (c *NetCutter) CutAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.cut.Store(true)
		conn.Close()
	}
	c.conns = nil
}

// cutConn reports a cut as a network error: paho ignores "use of closed network
// connection", taking it for its own Close.
type cutConn struct {
	net.Conn
	cut atomic.Bool
}

func (c *cutConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.cut.Load() {
		err = ErrNetCut
	}
	return n, err
}

func (c *cutConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil && c.cut.Load() {
		err = ErrNetCut
	}
	return n, err
}
