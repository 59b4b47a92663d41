package snmp

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"gatehouse/safeio"
)

// EnterpriseNumber is the agent's private enterprise number: a placeholder
// until one is registered with IANA (see the README). It heads the engine
// ID, sysObjectID and GATEHOUSE-MIB.
const EnterpriseNumber = 99999

// engineState is what survives a restart: the engine ID (each node its
// own, made at first start) and how often the engine started.
type engineState struct {
	EngineID string `json:"engine_id"` // hex
	Boots    uint32 `json:"engine_boots"`
}

const engineFile = "engine.json"

// bootEngine reads the engine's state from dir, makes it at the first
// start, counts this start and writes it back before the agent answers
// anything: a manager never sees the same boots twice with different
// times.
func bootEngine(dir string) ([]byte, uint32, error) {
	file := filepath.Join(dir, engineFile)
	var st engineState
	b, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.EngineID = hex.EncodeToString(newEngineID())
	case err != nil:
		return nil, 0, fmt.Errorf("snmp: engine state: %w", err)
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, 0, fmt.Errorf("snmp: engine state %s: %w", file, err)
		}
	}
	id, err := hex.DecodeString(st.EngineID)
	if err != nil || len(id) < 5 || len(id) > 32 {
		return nil, 0, fmt.Errorf("snmp: engine state %s: %q is not an engine ID", file, st.EngineID)
	}
	if st.Boots >= 1<<31-1 {
		return nil, 0, fmt.Errorf("snmp: engine state %s: engine boots at its maximum; make a new engine ID (remove the file)", file)
	}
	st.Boots++
	out, _ := json.Marshal(st)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, fmt.Errorf("snmp: engine state: %w", err)
	}
	if err := safeio.WriteFile(file, append(out, '\n'), 0o600); err != nil {
		return nil, 0, fmt.Errorf("snmp: engine state: %w", err)
	}
	return id, st.Boots, nil
}

// newEngineID is an RFC 3411 engine ID: the enterprise number with the
// high bit set, format 5 (octets), and 8 random octets.
func newEngineID() []byte {
	id := make([]byte, 13)
	binary.BigEndian.PutUint32(id, 0x80000000|EnterpriseNumber)
	id[4] = 5
	rand.Read(id[5:])
	return id
}
