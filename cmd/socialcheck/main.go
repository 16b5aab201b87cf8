// Command socialcheck is an outside conformance run of caud's social webhooks: it posts every
// Facebook and X delivery of a folder, signed, to the real handlers (in this process, over an
// embedded JetStream, on loopback) and reports per file what was published on CAU_INBOUND, then a
// summary. Each file gets a fresh store, so files of different sources that reuse a message id
// are not merged; each is posted twice, and the second post must publish nothing.
//
//	socialcheck --dir path/to/webhooks            # or CAU_WEBHOOK_CORPUS=path/to/webhooks
//
// The folder holds facebook/*.json and x/*.json and, optionally, manifest.jsonl with one
// {"file","platform","kind","expect"} line per file. From kind and expect the tool decides
// whether the file carries a message a person sent (a Messenger message that is not an echo, an
// X direct message or post): such a file must give exactly one request whose text holds the
// expected text (when the manifest quotes one); any other file must give none. Fragments (one
// element of entry[].messaging[] or entry[].changes[]) are wrapped into a Page delivery first;
// test-vector files (…vectors.json) are not deliveries and are skipped. Exit status 1 when a
// file does not meet its expectation.
package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/cmd/internal/socialrig"
)

const (
	appSecret      = "socialcheck-app-secret"
	consumerSecret = "socialcheck-consumer-secret"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type entry struct {
	File     string `json:"file"`
	Platform string `json:"platform"`
	Kind     string `json:"kind"`
	Expect   string `json:"expect"`
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("socialcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", os.Getenv("CAU_WEBHOOK_CORPUS"), "folder with facebook/ and x/ deliveries (default $CAU_WEBHOOK_CORPUS)")
	verbose := fs.Bool("v", false, "print every request's text in full")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "socialcheck: give --dir or CAU_WEBHOOK_CORPUS")
		return 2
	}
	manifest, err := readManifest(filepath.Join(*dir, "manifest.jsonl"))
	if err != nil {
		fmt.Fprintln(stderr, "socialcheck:", err)
		return 2
	}
	var files []string
	for _, p := range []string{"facebook", "x"} {
		m, _ := filepath.Glob(filepath.Join(*dir, p, "*.json"))
		files = append(files, m...)
	}
	slices.Sort(files)
	if len(files) == 0 {
		fmt.Fprintf(stderr, "socialcheck: no facebook/*.json or x/*.json under %s\n", *dir)
		return 2
	}
	var s summary
	for _, path := range files {
		rel, _ := filepath.Rel(*dir, path)
		rel = filepath.ToSlash(rel)
		if strings.HasSuffix(rel, "vectors.json") {
			fmt.Fprintf(stdout, "%-70s skipped (test vectors, not a delivery)\n", rel)
			s.skipped++
			continue
		}
		e := manifest[rel]
		if e.Platform == "" {
			e.Platform = strings.SplitN(rel, "/", 2)[0]
		}
		res, err := check(path, e)
		if err != nil {
			fmt.Fprintf(stdout, "%-70s ERROR %v\n", rel, err)
			s.failed = append(s.failed, rel)
			continue
		}
		s.add(rel, res)
		fmt.Fprintf(stdout, "%-70s %s\n", rel, res.line(*verbose))
	}
	s.print(stdout)
	if len(s.failed) > 0 {
		return 1
	}
	return 0
}

func readManifest(path string) (map[string]entry, error) {
	out := map[string]entry{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out[e.File] = e
	}
	return out, sc.Err()
}

// messageBearing decides from the manifest whether the file carries a message a person sent.
func messageBearing(e entry) bool {
	k, x := strings.ToLower(e.Kind), strings.ToLower(e.Expect)
	switch {
	case strings.Contains(k, "echo"), strings.Contains(x, "is_echo=true"), strings.Contains(k, "message_request"):
		return false
	case strings.HasPrefix(k, "messaging/message"), strings.Contains(k, "direct_message_events"),
		strings.HasPrefix(k, "tweet_create_events"), strings.Contains(k, "another page"):
		return true
	case strings.HasPrefix(k, "page messaging"):
		return strings.Contains(x, "text message") || strings.HasPrefix(x, "messaging/message")
	}
	return false
}

var quotedText = regexp.MustCompile(`(?:text|DM|mention/reply) ['"]([^'"]+)['"]`)

// expectedText is the text the manifest quotes, with leading @mentions removed ("" when none).
func expectedText(e entry) string {
	m := quotedText.FindStringSubmatch(e.Expect)
	if m == nil {
		return ""
	}
	t := html.UnescapeString(m[1])
	for strings.HasPrefix(t, "@") {
		_, rest, ok := strings.Cut(t, " ")
		if !ok {
			break
		}
		t = rest
	}
	return t
}

type result struct {
	bearing  bool
	want     string
	status   int
	requests []channels.Request
	again    int // requests published by the second post
	ok       bool
	why      string
	took     time.Duration
}

func (r result) line(verbose bool) string {
	verdict := "ok"
	if !r.ok {
		verdict = "FAIL " + r.why
	}
	var texts []string
	for _, req := range r.requests {
		t := req.Text
		if !verbose && len(t) > 60 {
			t = t[:60] + "…"
		}
		name := req.Requester.Name
		if name != "" {
			name = " from " + name
		}
		texts = append(texts, fmt.Sprintf("%q%s", t, name))
	}
	kind := "none expected"
	if r.bearing {
		kind = "message"
	}
	return fmt.Sprintf("%-4s %d request(s) [%s] HTTP %d; %s", verdict, len(r.requests), strings.Join(texts, "; "), r.status, kind)
}

// check posts one file twice to a fresh rig.
func check(path string, e entry) (result, error) {
	res := result{bearing: messageBearing(e), want: expectedText(e)}
	body, err := os.ReadFile(path)
	if err != nil {
		return res, err
	}
	if e.Platform == "facebook" {
		body = wrapFragment(body)
	}
	rig, err := socialrig.Start(socialrig.Options{AppSecret: appSecret, ConsumerSecret: consumerSecret})
	if err != nil {
		return res, err
	}
	defer rig.Stop()
	start := time.Now()
	if res.status, err = post(rig.URL, e.Platform, body); err != nil {
		return res, err
	}
	res.took = time.Since(start)
	var last uint64
	if res.requests, last, err = rig.Requests(0); err != nil {
		return res, err
	}
	if _, err := post(rig.URL, e.Platform, body); err != nil {
		return res, err
	}
	again, _, err := rig.Requests(last)
	if err != nil {
		return res, err
	}
	res.again = len(again)
	res.ok, res.why = judge(res)
	return res, nil
}

func judge(r result) (bool, string) {
	switch {
	case r.status != http.StatusOK:
		return false, fmt.Sprintf("HTTP %d", r.status)
	case r.again != 0:
		return false, fmt.Sprintf("the second post published %d more", r.again)
	case !r.bearing && len(r.requests) != 0:
		return false, "a request from a delivery that carries no message"
	case !r.bearing:
		return true, ""
	case len(r.requests) != 1:
		return false, fmt.Sprintf("%d requests, want 1", len(r.requests))
	case strings.TrimSpace(r.requests[0].Text) == "":
		return false, "empty text"
	case r.want != "" && !strings.Contains(r.requests[0].Text, r.want):
		return false, fmt.Sprintf("text does not hold %q", r.want)
	}
	return true, ""
}

// wrapFragment puts one element of entry[].messaging[] (sender/recipient) or of entry[].changes[]
// (field/value) into a Page delivery; a whole delivery comes back unchanged.
func wrapFragment(body []byte) []byte {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return body
	}
	if _, ok := top["object"]; ok {
		return body
	}
	_, messaging := top["sender"]
	_, change := top["field"]
	switch {
	case messaging:
		return []byte(`{"object":"page","entry":[{"time":1457764198000,"messaging":[` + string(bytes.TrimSpace(body)) + `]}]}`)
	case change:
		return []byte(`{"object":"page","entry":[{"time":1457764198000,"changes":[` + string(bytes.TrimSpace(body)) + `]}]}`)
	}
	return body
}

func post(base, platform string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/webhooks/"+platform, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if platform == "x" {
		m := hmac.New(sha256.New, []byte(consumerSecret))
		m.Write(body)
		req.Header.Set("X-Twitter-Webhooks-Signature", "sha256="+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	} else {
		m := hmac.New(sha256.New, []byte(appSecret))
		m.Write(body)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

type summary struct {
	bearing, bearingOK, other, otherOK, skipped int
	failed                                      []string
}

func (s *summary) add(file string, r result) {
	if r.bearing {
		s.bearing++
		if r.ok {
			s.bearingOK++
		}
	} else {
		s.other++
		if r.ok {
			s.otherOK++
		}
	}
	if !r.ok {
		s.failed = append(s.failed, file)
	}
}

func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "\nmessage-bearing deliveries: %d/%d gave exactly one request with its text\n", s.bearingOK, s.bearing)
	fmt.Fprintf(w, "other deliveries (echoes, receipts, opt-ins, postbacks, …): %d/%d gave none\n", s.otherOK, s.other)
	fmt.Fprintf(w, "re-posted deliveries: none published a second request unless listed below\n")
	fmt.Fprintf(w, "skipped (test vectors): %d\n", s.skipped)
	if len(s.failed) > 0 {
		fmt.Fprintf(w, "failed: %s\n", strings.Join(s.failed, ", "))
	}
}
