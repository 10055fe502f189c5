// Package dashboard serves the node's web dashboard: a single page (plain HTML, CSS and ES
// modules embedded in the binary, no build step) that shows the node, its mesh and its models.
// The page holds no data: everything it shows or does goes through the node's public HTTP API,
// with the API key the user gives it where server.api_keys is set.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var files embed.FS

// static is the bundle's root: index.html and assets/.
var static = func() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embed directive above guarantees the folder
	}
	return sub
}()

// Handler serves the page at / and /index.html and its files under /assets/.
func Handler() http.Handler {
	assets := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/" || r.URL.Path == "/index.html" {
			// The page may change with every build: the browser asks again each time.
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
			http.ServeFileFS(w, r, static, "index.html")
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		assets.ServeHTTP(w, r)
	})
}

// IsShell reports whether r asks for the page or one of its files: GET or HEAD of /,
// /index.html or /assets/.... Those hold no data, so they are served without an API key; the
// page then asks the user for one.
func IsShell(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/" || r.URL.Path == "/index.html" || strings.HasPrefix(r.URL.Path, "/assets/")
}

// OpenShell routes the page's own requests (IsShell) to open and every other one to guarded:
// the dashboard's static files need no key, the API behind them does.
func OpenShell(guarded, open http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsShell(r) {
			open.ServeHTTP(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// Size is the bundle's total size in bytes: every embedded file.
func Size() (int64, error) {
	var total int64
	err := fs.WalkDir(static, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	return total, err
}
