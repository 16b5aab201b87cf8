package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage/archive"
)

const rawMail = "From: Ana <ana@ipn.mx>\r\nTo: cau@ipn.mx\r\nSubject: Falla\r\nMessage-ID: <1@ipn.mx>\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hola<script>alert(1)</script></p>\r\n"

var png = []byte("\x89PNG\r\n\x1a\n fake image bytes")

type fixture struct {
	env       *natstest.Env
	a         *archive.Archive
	mail, dsk string // request ids: an e-mail with attachments, a desk request without original
}

func setup(t *testing.T) *fixture {
	t.Helper()
	env := natstest.Start(t, natsjs.Topology{})
	ctx := context.Background()
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ids := channels.NewIDs()
	var atts []channels.Attachment
	for _, a := range []struct {
		name, ct string
		data     []byte
	}{
		{"../../<script>alert(1)</script>.html", "text/html", []byte("<script>alert(document.cookie)</script>")},
		{"fotografía del equipo.png", "image/png", png},
	} {
		obj, err := sink.Archive(ctx, "email", a.ct, bytes.NewReader(a.data))
		if err != nil {
			t.Fatal(err)
		}
		atts = append(atts, channels.Attachment{Name: a.name, ContentType: a.ct, Size: obj.Size, SHA256: obj.SHA256, Object: obj.Object})
	}
	// An attachment whose bytes are gone (past retention).
	atts = append(atts, channels.Attachment{Name: "viejo.pdf", ContentType: "application/pdf", Object: "email/0000"})
	f := &fixture{env: env, a: archive.New(env.Handles, nil)}
	mail := &channels.Request{ID: ids.New(time.Now()), Channel: channels.MediumEmail, ReceivedAt: time.Now(), Text: "Hola", Attachments: atts}
	if _, err := sink.Publish(ctx, channels.Submission{Request: mail, Subject: channels.SubjectEmailCAU, MsgID: "m", Source: "imap://x", Original: []byte(rawMail), OriginalType: "message/rfc822"}); err != nil {
		t.Fatal(err)
	}
	desk := &channels.Request{ID: ids.New(time.Now()), Channel: channels.MediumPhone, ReceivedAt: time.Now(), Text: "Sin original"}
	if _, err := sink.Publish(ctx, channels.Submission{Request: desk, Subject: channels.SubjectDesk, MsgID: "d", Source: "desk://phone"}); err != nil {
		t.Fatal(err)
	}
	f.mail, f.dsk = mail.ID, desk.ID
	// The sink indexes "received" pipelined; wait until both are readable.
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range []string{f.mail, f.dsk} {
		for {
			if _, _, err := natsjs.GetState(ctx, env.Requests, id); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("request not indexed")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return f
}

func read(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	b, err := archive.ReadAll(rc, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOriginalAndAttachments(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	file, rc, err := f.a.Original(ctx, f.mail)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, rc); string(got) != rawMail {
		t.Fatalf("original %q", got)
	}
	if file.ContentType != "message/rfc822" || file.Name != f.mail+".eml" || file.Size != int64(len(rawMail)) || len(file.SHA256) != 64 {
		t.Errorf("original file %+v", file)
	}
	file, rc, err = f.a.Attachment(ctx, f.mail, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, rc); !bytes.Equal(got, png) || file.Name != "fotografía del equipo.png" || file.ContentType != "image/png" {
		t.Errorf("attachment %+v %q", file, got)
	}
	for _, c := range []struct {
		name string
		fn   func() error
		want error
	}{
		{"desk has no original", func() error { _, _, err := f.a.Original(ctx, f.dsk); return err }, archive.ErrNoOriginal},
		{"no attachment 3", func() error { _, _, err := f.a.Attachment(ctx, f.mail, 3); return err }, archive.ErrNoOriginal},
		{"negative attachment", func() error { _, _, err := f.a.Attachment(ctx, f.mail, -1); return err }, archive.ErrNoOriginal},
		{"bytes gone", func() error { _, _, err := f.a.Attachment(ctx, f.mail, 2); return err }, archive.ErrNoOriginal},
		{"unknown request", func() error { _, _, err := f.a.Original(ctx, channels.NewIDs().New(time.Now())); return err }, archive.ErrUnknownRequest},
		{"not an id", func() error { _, _, err := f.a.Original(ctx, "../x"); return err }, archive.ErrUnknownRequest},
	} {
		if err := c.fn(); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := archive.ReadAll(io.NopCloser(strings.NewReader("123456")), 5); !errors.Is(err, archive.ErrTooLarge) {
		t.Errorf("ReadAll over its bound: %v", err)
	}
}

func TestDownloadsAreDefensive(t *testing.T) {
	f := setup(t)
	mux := http.NewServeMux()
	f.a.Register(mux, func(h http.Handler) http.Handler { return h })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string, hdr ...string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	base := "/api/v1/requests/" + f.mail
	resp, body := get(base + "/attachments/0")
	h := resp.Header
	if resp.StatusCode != 200 || body != "<script>alert(document.cookie)</script>" {
		t.Fatalf("download: %d %q", resp.StatusCode, body)
	}
	if h.Get("Content-Type") != "application/octet-stream" || h.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.Contains(h.Get("Content-Security-Policy"), "sandbox") || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") ||
		h.Get("Cache-Control") != "no-store" {
		t.Errorf("hostile attachment headers: %v", h)
	}
	disp, params, err := mime.ParseMediaType(h.Get("Content-Disposition"))
	if err != nil || disp != "attachment" || strings.ContainsAny(params["filename"], `/\<>"`) || !strings.HasSuffix(params["filename"], ".html") {
		t.Errorf("disposition %q: %v %v", h.Get("Content-Disposition"), params, err)
	}
	// A raster image may be shown in the page; its UTF-8 name survives.
	resp, _ = get(base+"/attachments/1?inline=1", "If-None-Match", "")
	disp, params, _ = mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
	if resp.Header.Get("Content-Type") != "image/png" || disp != "inline" || params["filename"] != "fotografía del equipo.png" {
		t.Errorf("inline image: %v %v", resp.Header, params)
	}
	// inline=1 never makes anything else render in the page.
	resp, _ = get(base + "/attachments/0?inline=1")
	if d, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); d != "attachment" {
		t.Errorf("html inline: %s", resp.Header.Get("Content-Disposition"))
	}
	resp, body = get(base + "/original")
	if resp.StatusCode != 200 || body != rawMail || !strings.HasPrefix(resp.Header.Get("Content-Type"), "message/rfc822") {
		t.Errorf("original: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = get(base+"/original", "If-None-Match", resp.Header.Get("ETag"))
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional get: %d", resp.StatusCode)
	}
	for path, status := range map[string]int{
		base + "/attachments/9":                   404,
		base + "/attachments/x":                   404,
		"/api/v1/requests/" + f.dsk + "/original": 404,
		"/api/v1/requests/nope/original":          404,
	} {
		if resp, body := get(path); resp.StatusCode != status || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
}
