package explorerapi

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// web holds the leaderboard page: plain HTML, CSS and JavaScript, no build step.
//
//go:embed web
var web embed.FS

// staticHandler serves the page. The files change only with the binary, so a
// short cache plus revalidation keeps repeat visits cheap on slow links.
func staticHandler() http.Handler {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embed directive guarantees the folder
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A path that is no file name (overlong UTF-8 such as %c0%ae,
		// invalid UTF-8, NUL) is a 404 here, not the file server's 500.
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "."
		}
		if !utf8.ValidString(r.URL.Path) || strings.ContainsRune(r.URL.Path, 0) || !fs.ValidPath(name) {
			fail(w, http.StatusNotFound, "no such page: "+strconv.Quote(r.URL.Path))
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}
