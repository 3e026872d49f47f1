package explorerapi

import (
	"embed"
	"io/fs"
	"net/http"
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
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}
