package spotifyauth

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"time"
)

// page is one of the handler's own HTML pages (errors, logout).
type page struct {
	Title   string
	Message string
	// Optional call to action: a link, or a POST form when FormAction is set.
	LinkURL, LinkText string
	FormAction        string
	FormRD            string
	ButtonText        string
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#191414}
h1{font-size:1.4rem}a.button,button{display:inline-block;background:#1db954;color:#fff;border:0;border-radius:2rem;padding:.6rem 1.4rem;font-size:1rem;text-decoration:none;cursor:pointer}</style>
</head><body>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .FormAction}}<form method="post" action="{{.FormAction}}">{{if .FormRD}}<input type="hidden" name="rd" value="{{.FormRD}}">{{end}}<button type="submit">{{.ButtonText}}</button></form>{{end}}
{{if .LinkURL}}<p><a class="button" href="{{.LinkURL}}">{{.LinkText}}</a></p>{{end}}
</body></html>
`))

// setPageHeaders marks a response of ours as private, unframeable and
// script-free.
//
// The values share one fresh backing array: one allocation instead of
// five, and no slice shared between responses (later handlers may edit
// header values in place).
func setPageHeaders(h http.Header) {
	v := make([]string, len(pageHeaderNames))
	copy(v, pageHeaderValues[:])
	for i, name := range pageHeaderNames {
		h[name] = v[i : i+1 : i+1]
	}
}

var (
	pageHeaderNames  = [...]string{"Cache-Control", "Referrer-Policy", "X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy"}
	pageHeaderValues = [...]string{"no-store", "no-referrer", "nosniff", "DENY",
		"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"}
)

func writePage(w http.ResponseWriter, status int, p page) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, p); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString("internal error\n")
	}
	setPageHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// apiError is the JSON body of answers to non-browser requests.
type apiError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	LoginURL    string `json:"login_url,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"internal_error"}`)
	}
	setPageHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func setRetryAfter(h http.Header, d time.Duration) {
	secs := int((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	h.Set("Retry-After", strconv.Itoa(secs))
}
