// Package web is the web console's files, served from the binary: the
// appliance may have no internet, so nothing comes from elsewhere.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var files embed.FS

// Static is the console's files, index.html at the top.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	return sub
}
