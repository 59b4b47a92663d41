package collector

import "testing"

// A folder's ids are its own, even when another folder's name starts
// with it (INBOX and INBOX/Sub).
func TestIDFolder(t *testing.T) {
	for id, want := range map[string]string{
		"INBOX/1700000000/42":         "INBOX",
		"INBOX/Sub/1700000000/42":     "INBOX/Sub",
		"Archive/2024/Q1/17/3":        "Archive/2024/Q1",
		"INBOX.Sub.Deeper/1700000/99": "INBOX.Sub.Deeper",
	} {
		if got := idFolder(id); got != want {
			t.Errorf("idFolder(%q) = %q, want %q", id, got, want)
		}
	}
}
