package relay

import (
	"log/slog"
	"reflect"
	"testing"

	"gatehouse/config"
)

// A source is kept while its settings stay, made anew when they change,
// and forgotten when its account no longer logs in with OAuth2.
func TestTokenSourcesFollowTheConfig(t *testing.T) {
	tk := newTokens(t.TempDir(), slog.New(slog.DiscardHandler))
	o := &config.OAuth2{TokenURL: "https://login.example/token", ClientID: "a", ClientSecretFile: "/s"}
	a := tk.source("fetch:a", o)
	if tk.source("fetch:a", &config.OAuth2{TokenURL: "https://login.example/token", ClientID: "a", ClientSecretFile: "/s"}) != a {
		t.Error("the same settings made a new source")
	}
	if tk.source("fetch:a", &config.OAuth2{TokenURL: "https://login.example/token", ClientID: "b", ClientSecretFile: "/s"}) == a {
		t.Error("changed settings kept the old source")
	}
	tk.source("connector:m365", o)
	tk.prune(&config.Config{Fetch: []config.FetchAccount{{Name: "a", OAuth2: o}, {Name: "pw", PasswordFile: "/p"}}})
	var names []string
	for _, s := range tk.status() {
		names = append(names, s.Account)
	}
	if !reflect.DeepEqual(names, []string{"fetch:a"}) {
		t.Errorf("after the connector left the config: %v", names)
	}
}
