// Command consolecheck runs a folder of e-mails (for example an outside corpus that may not be
// copied into this repository) through the web console's mail sanitizer and shows each HTML mail in
// headless Chromium the way the item view does (a sandboxed frame under the console's policy). It
// reports, per file and in total, any JavaScript dialog (a script that ran), any request the page
// made to anything but the local server (remote content), and any unsafe markup left by the
// sanitizer. It exits 1 when any file has a finding. Loopback only.
//
//	go run ./cmd/consolecheck --dir PATH/TO/MAIL/CORPUS
//
// The folder can also be given as CAU_MAIL_CORPUS.
package main

import (
	"context"
	"flag"
	"fmt"
	"html"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/ipn-cgsi/caud/cmd/internal/headless"
	"github.com/ipn-cgsi/caud/triage/console"
)

func main() { os.Exit(run()) }

// unsafeHTML matches what the sanitizer must never leave: active elements, event handlers,
// javascript: URLs, and sources that load from elsewhere.
var unsafeHTML = regexp.MustCompile(`(?i)<\s*(script|iframe|object|embed|form|base|meta|link|style|svg|math|video|audio)\b|<[^>]*(\son[a-z]+\s*=|javascript:|\ssrcset\s*=|\ssrc\s*=\s*"?(https?:)?//|\sstyle\s*=)`)

type finding struct {
	file string
	what string
}

func run() int {
	dir := flag.String("dir", os.Getenv("CAU_MAIL_CORPUS"), "folder of .eml files, searched recursively (CAU_MAIL_CORPUS)")
	verbose := flag.Bool("v", false, "print every file checked")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "consolecheck: give --dir or CAU_MAIL_CORPUS")
		return 2
	}
	var files []string
	_ = filepath.WalkDir(*dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".eml") || strings.HasSuffix(p, ".msg") || strings.HasSuffix(p, ".txt")) {
			files = append(files, p)
		}
		return nil
	})
	// Sanitize everything; keep the mails that have HTML for the browser.
	type doc struct{ file, html string }
	var docs []doc
	var findings []finding
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		_, h := console.SanitizeMail(raw)
		if strings.TrimSpace(h) == "" {
			continue
		}
		if m := unsafeHTML.FindString(h); m != "" {
			findings = append(findings, finding{f, "sanitized HTML still has " + strconv.Quote(m)})
		}
		docs = append(docs, doc{f, h})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "consolecheck:", err)
		return 1
	}
	base := "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /doc/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n < 0 || n >= len(docs) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Security-Policy", console.OriginalCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><html><head><meta charset=\"utf-8\"></head><body>%s</body></html>", docs[n].html)
	})
	mux.HandleFunc("GET /view/{n}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-src 'self'")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>%s</title></head><body><iframe sandbox src="/doc/%s"></iframe></body></html>`,
			html.EscapeString(r.PathValue("n")), r.PathValue("n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	path, err := headless.ExecPath()
	if err != nil {
		fmt.Fprintln(os.Stderr, "consolecheck:", err)
		return 1
	}
	profile, err := os.MkdirTemp("", "consolecheck-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "consolecheck:", err)
		return 1
	}
	defer os.RemoveAll(profile)
	ctx, stop := headless.NewContext(path, profile)
	defer stop()
	var mu sync.Mutex
	current := -1
	perDoc := map[int][]string{}
	note := func(what string) {
		mu.Lock()
		perDoc[current] = append(perDoc[current], what)
		mu.Unlock()
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			note("script ran: dialog " + strconv.Quote(e.Message))
			go func() {
				_ = chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
					_, err := cdp.Call(ctx, t, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
					return err
				}))
			}()
		case *network.EventRequestWillBeSent:
			if u := e.Request.URL; !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") && u != "about:blank" {
				note("remote request " + u)
			}
		}
	}); err != nil {
		fmt.Fprintln(os.Stderr, "consolecheck: start Chromium:", err)
		return 1
	}
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{})
		return err
	})); err != nil {
		fmt.Fprintln(os.Stderr, "consolecheck: network events:", err)
		return 1
	}
	start := time.Now()
	for i, d := range docs {
		mu.Lock()
		current = i
		mu.Unlock()
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := chromedp.Do(tctx, chromedp.Navigate(fmt.Sprintf("%s/view/%d", base, i)))
		cancel()
		if err != nil {
			findings = append(findings, finding{d.file, "page did not load: " + err.Error()})
		}
		if *verbose {
			fmt.Printf("checked %s\n", d.file)
		}
	}
	// Navigate away so late events of the last page are attributed before counting.
	_ = chromedp.Do(ctx, chromedp.Navigate("about:blank"))
	mu.Lock()
	for i, ws := range perDoc {
		for _, w := range ws {
			if i >= 0 && i < len(docs) {
				findings = append(findings, finding{docs[i].file, w})
			}
		}
	}
	mu.Unlock()
	for _, f := range findings {
		fmt.Printf("FINDING %s: %s\n", f.file, f.what)
	}
	fmt.Printf("%d files read, %d with HTML shown in Chromium in %s, %d findings\n", len(files), len(docs), time.Since(start).Round(time.Millisecond), len(findings))
	if len(findings) > 0 {
		return 1
	}
	return 0
}
