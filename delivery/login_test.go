package delivery

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestAuthToken(t *testing.T) {
	ir := []byte("user=relay@example.test\x01auth=Bearer tok\x01\x01")
	b64 := base64.StdEncoding.EncodeToString(ir)

	c, got, done := scriptServer(t, "220 x\r\n", "250-x\r\n250 AUTH XOAUTH2\r\n", "235 2.7.0 Authentication successful\r\n")
	if err := c.greet("relay.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.authToken("XOAUTH2", ir, nil); err != nil {
		t.Fatal(err)
	}
	c.conn.Close()
	<-done
	if !strings.HasSuffix(got.String(), "AUTH XOAUTH2 "+b64+"\r\n") {
		t.Errorf("sent %q", got.String())
	}

	// Refused: the server's reason comes as a 334 challenge; the abort
	// answers it and the 535 follows.
	reason := base64.StdEncoding.EncodeToString([]byte(`{"status":"invalid_token","scope":"smtp"}`))
	c, got, done = scriptServer(t, "220 x\r\n", "250-x\r\n250 AUTH OAUTHBEARER\r\n", "334 "+reason+"\r\n", "535 5.7.8 Authentication credentials invalid\r\n")
	if err := c.greet("relay.test"); err != nil {
		t.Fatal(err)
	}
	err := c.authToken("OAUTHBEARER", ir, []byte{1})
	if err == nil || !strings.Contains(err.Error(), "535") || !strings.Contains(err.Error(), "invalid_token") {
		t.Fatalf("refusal: %v", err)
	}
	c.conn.Close()
	<-done
	if !strings.HasSuffix(got.String(), "\r\nAQ==\r\n") {
		t.Errorf("sent %q, want the abort AQ== last", got.String())
	}
}
