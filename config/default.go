package config

import _ "embed"

//go:embed default.yaml
var defaultYAML []byte

// DefaultName is how the built-in default config names itself in messages.
const DefaultName = "<built-in default>"

// DefaultYAML returns the built-in default config file.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Default returns the built-in default config. It always validates; a test
// holds it to that.
func Default() *Config {
	c, _, err := Parse(DefaultName, defaultYAML)
	if err != nil {
		panic("config: built-in default does not validate: " + err.Error())
	}
	return c
}
