package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One TCP port carries everything between nodes, over mutual TLS: the
// first byte after the handshake says what follows, Raft's own protocol
// or one of our calls (one JSON request, one JSON answer). A node that
// has not joined yet has no certificate: it may only ask to join.

const (
	connRaft = 'R'
	connCall = 'C'
)

// Bounds on what a peer may make us read or wait for.
const (
	maxCallSize   = 16 << 20 // a config with its files
	maxJoinSize   = 64 << 10 // what a peer without a certificate may send
	callTimeout   = 10 * time.Second
	handshakeTime = 5 * time.Second
	// maxHandshakes bounds the connections not yet authenticated: the
	// port is open to cluster.peers, and not every peer is a member.
	maxHandshakes = 32
)

// peerInfo is who is at the other end of a connection, as its certificate
// says; nil name: no certificate (a node joining).
type peerInfo struct {
	name string
	role string
	fp   string
}

// mux accepts the cluster port's connections and sorts them.
type mux struct {
	ln    net.Listener
	node  *Node
	raftC chan net.Conn
	log   *slog.Logger
	slots chan struct{} // handshakes in progress

	closeOnce sync.Once
	done      chan struct{}
}

func (m *mux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.log.Error("cluster port", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case m.slots <- struct{}{}:
			go m.handle(c)
		default:
			c.Close() // too many at once: the peer tries again
		}
	}
}

func (m *mux) handle(raw net.Conn) {
	id := m.node.identity()
	if id == nil {
		raw.Close()
		return
	}
	conn := tls.Server(raw, m.node.serverTLS(id))
	conn.SetDeadline(time.Now().Add(handshakeTime))
	err := conn.Handshake()
	var kind [1]byte
	if err == nil {
		_, err = io.ReadFull(conn, kind[:])
	}
	<-m.slots
	if err != nil {
		m.log.Warn("cluster connection refused", "peer", raw.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	peer := m.node.peerOf(conn.ConnectionState())
	switch kind[0] {
	case connRaft:
		if peer == nil {
			m.log.Warn("raft connection without a member's certificate refused", "peer", raw.RemoteAddr().String())
			conn.Close()
			return
		}
		conn.SetDeadline(time.Time{})
		select {
		case m.raftC <- conn:
		case <-m.done:
			conn.Close()
		}
	case connCall:
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(callTimeout))
		var req Request
		limit := int64(maxCallSize)
		if peer == nil {
			limit = maxJoinSize
		}
		if err := json.NewDecoder(io.LimitReader(conn, limit)).Decode(&req); err != nil {
			return
		}
		resp := m.node.serveCall(peer, &req)
		json.NewEncoder(conn).Encode(resp)
	default:
		conn.Close()
	}
}

func (m *mux) close() {
	m.closeOnce.Do(func() {
		close(m.done)
		m.ln.Close()
	})
}

// streamLayer is Raft's view of the port: connections marked 'R'.
type streamLayer struct {
	m *mux
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raftC:
		return c, nil
	case <-s.m.done:
		return nil, errors.New("cluster port closed")
	}
}

func (s *streamLayer) Close() error   { s.m.close(); return nil }
func (s *streamLayer) Addr() net.Addr { return s.m.node.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.m.node.dial(string(addr), timeout, connRaft, nil)
}

// serverTLS is the port's TLS: our certificate, and the peer's checked if
// it shows one (peerOf decides what it may do).
func (n *Node) serverTLS(id *identity) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		ClientAuth:   tls.RequestClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil // a node joining: only a join call is served
			}
			_, err := n.checkPeer(id, raw)
			return err
		},
	}
}

// checkPeer accepts a certificate of this cluster that is not removed,
// and, once the membership is known, that belongs to a member.
func (n *Node) checkPeer(id *identity, raw [][]byte) (*x509.Certificate, error) {
	leaf, err := verifyChain(id.caPool, raw)
	if err != nil {
		return nil, err
	}
	fp := fingerprint(leaf.Raw)
	st, _ := n.fsm.view()
	if name, gone := st.Removed[fp]; gone {
		return nil, fmt.Errorf("the certificate of %s was removed from the cluster", name)
	}
	if len(st.Members) > 0 {
		m, ok := st.Members[leaf.Subject.CommonName]
		if !ok || m.Fingerprint != fp {
			return nil, fmt.Errorf("%s is not a member of this cluster", leaf.Subject.CommonName)
		}
	}
	return leaf, nil
}

func (n *Node) peerOf(cs tls.ConnectionState) *peerInfo {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	role := ""
	if len(leaf.Subject.OrganizationalUnit) > 0 {
		role = leaf.Subject.OrganizationalUnit[0]
	}
	return &peerInfo{name: leaf.Subject.CommonName, role: role, fp: fingerprint(leaf.Raw)}
}

// dial opens a connection of the given kind to a node. pinCA, when set,
// is the fingerprint of the CA the other end must show (a join, before
// this node has a certificate); otherwise both ends use the cluster's.
func (n *Node) dial(addr string, timeout time.Duration, kind byte, pinCA *string) (net.Conn, error) {
	// A node that stops gives up its dials at once: Raft's shutdown
	// waits for its replicators, which may be dialling a node that is
	// gone.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if stop := n.stopping(); stop != nil {
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true} // verified below, against the cluster CA rather than a host name
	if pinCA != nil {
		want := *pinCA
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) < 2 {
				return errors.New("the backend shows no CA certificate")
			}
			ca, err := x509.ParseCertificate(raw[len(raw)-1])
			if err != nil {
				return err
			}
			if fingerprint(ca.Raw) != want {
				return errors.New("the backend's certificate does not match the token's CA: not the cluster the token is for")
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			_, err = verifyChain(pool, raw[:1])
			return err
		}
	} else {
		id := n.identity()
		if id == nil {
			raw.Close()
			return nil, errors.New("this node has not joined a cluster")
		}
		cfg.Certificates = []tls.Certificate{id.cert}
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := n.checkPeer(id, raw)
			return err
		}
	}
	conn := tls.Client(raw, cfg)
	conn.SetDeadline(time.Now().Add(timeout))
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	if _, err := conn.Write([]byte{kind}); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// call makes one call to the node at addr.
func (n *Node) call(addr string, req *Request, pinCA *string) (*Response, error) {
	return n.callWithin(addr, req, pinCA, 5*time.Second, callTimeout)
}

// callWithin is call with its bounds: to connect, and for the whole call.
func (n *Node) callWithin(addr string, req *Request, pinCA *string, connect, limit time.Duration) (*Response, error) {
	conn, err := n.dial(addr, connect, connCall, pinCA)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(limit))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, err
	}
	var resp Response
	if err := json.NewDecoder(io.LimitReader(conn, maxCallSize)).Decode(&resp); err != nil {
		return nil, fmt.Errorf("%s: no answer: %w", addr, err)
	}
	if resp.Error != "" {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}
