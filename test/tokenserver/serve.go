package tokenserver

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"testing"

	"gatehouse/test/netnstest"
)

// Serve serves s over HTTPS on addr (host:port) inside network namespace
// ns, with the key and certificate in the PEM file keyCert (what
// mailWorld's issue returns), until the test ends. It returns the base
// URL: base+"/token", base+"/devicecode", base+"/introspect".
//
// Dovecot's oauth2 passdb uses this same listener: its oauth2 config names
// the test CA in tls_ca_cert_file, so introspection goes over TLS as it
// would to a real provider. Serve may be called again for other namespaces
// (one server, one state, reachable from several networks).
func (s *Server) Serve(t testing.TB, ns, addr, keyCert string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(keyCert, keyCert)
	if err != nil {
		t.Fatalf("tokenserver: %s: %v", keyCert, err)
	}
	var ln net.Listener
	netnstest.In(t, ns, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatalf("tokenserver: listen on %s in %s: %v", addr, ns, err)
	}
	srv := &http.Server{Handler: s, ErrorLog: log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("tokenserver on %s: %v", addr, err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "https://" + addr
}
