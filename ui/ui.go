// Package ui holds the dashboard's static files, embedded in the binary.
package ui

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// FS is the dashboard's files rooted at static/: index.html and assets.
var FS fs.FS = mustSub(static, "static")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time; this cannot fail
	}
	return sub
}
