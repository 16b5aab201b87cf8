// Package archive gives agents the bytes a request arrived with: its original (the raw e-mail, the
// scanned memo, the webhook body) and its attachments, kept in the object store cau_originals, and
// the parts of an original e-mail for display. The console calls it directly (same process); the API
// serves it at GET /api/v1/requests/{id}/original and GET /api/v1/requests/{id}/attachments/{n} as
// downloads with defensive headers (see Register).
//
// Nothing here sanitizes: bytes are returned as they arrived, hostile or not. Whoever renders them
// (the console) sanitizes HTML and blocks remote content.
package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
)

// Errors callers map to 404.
var (
	// ErrUnknownRequest: no request has that id (natsjs.ErrUnknownRequest).
	ErrUnknownRequest = natsjs.ErrUnknownRequest
	// ErrNoOriginal: the request has no archived original (desk intake), or no attachment with that
	// number, or its bytes are no longer in the object store (past retention).
	ErrNoOriginal = errors.New("no archived bytes")
)

// File describes archived bytes.
type File struct {
	// Name is a file name to offer for a download (not yet sanitized: see SafeFilename).
	Name string `json:"name"`
	// ContentType is what the source declared (the mail part's type, the scan's type); it is not
	// to be trusted for rendering.
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	// Object is the key in cau_originals.
	Object string `json:"object"`
}

// Archive reads originals and attachments. Safe for concurrent use.
type Archive struct {
	h   *natsjs.Handles
	log *slog.Logger
}

// New returns an Archive over the topology h; log may be nil.
func New(h *natsjs.Handles, log *slog.Logger) *Archive {
	log = channels.OrDiscard(log)
	return &Archive{h: h, log: log}
}

// Request returns a request as it was published, found through its index entry in cau_requests;
// ErrUnknownRequest when there is none.
func (a *Archive) Request(ctx context.Context, id string) (*channels.Request, error) {
	if !validID(id) {
		return nil, ErrUnknownRequest
	}
	st, _, err := natsjs.GetState(ctx, a.h.Requests, id)
	if err != nil {
		return nil, err
	}
	var data []byte
	switch {
	case st.InboundSeq > 0:
		m, err := a.h.Inbound.GetMsg(ctx, st.InboundSeq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, ErrUnknownRequest
		}
		if err != nil {
			return nil, fmt.Errorf("request %s: %w", id, err)
		}
		data = m.Data
	case st.TriagedSeq > 0:
		m, err := a.h.Triaged.GetMsg(ctx, st.TriagedSeq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, ErrUnknownRequest
		}
		if err != nil {
			return nil, fmt.Errorf("request %s: %w", id, err)
		}
		var item struct {
			Request json.RawMessage `json:"request"`
		}
		if err := json.Unmarshal(m.Data, &item); err != nil {
			return nil, fmt.Errorf("request %s: decode item: %w", id, err)
		}
		data = item.Request
	default:
		return nil, ErrUnknownRequest
	}
	var r channels.Request
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("request %s: decode: %w", id, err)
	}
	if r.ID != id {
		return nil, fmt.Errorf("request %s: index points at request %q", id, r.ID)
	}
	return &r, nil
}

// Original describes a request's original and opens its bytes. The reader verifies the object
// store's digest: a damaged object fails on its last Read instead of ending cleanly. The caller
// closes it.
func (a *Archive) Original(ctx context.Context, id string) (File, io.ReadCloser, error) {
	r, err := a.Request(ctx, id)
	if err != nil {
		return File{}, nil, err
	}
	if r.Original == nil || r.Original.Object == "" {
		return File{}, nil, ErrNoOriginal
	}
	f := File{Size: r.Original.Size, SHA256: r.Original.SHA256, Object: r.Original.Object}
	return a.open(ctx, f, func(ct string) string { return id + extension(ct, r.Channel) })
}

// Attachment describes a request's attachment n (0-based, the order of Request.Attachments) and
// opens its bytes, as Original does.
func (a *Archive) Attachment(ctx context.Context, id string, n int) (File, io.ReadCloser, error) {
	r, err := a.Request(ctx, id)
	if err != nil {
		return File{}, nil, err
	}
	if n < 0 || n >= len(r.Attachments) || r.Attachments[n].Object == "" {
		return File{}, nil, ErrNoOriginal
	}
	at := r.Attachments[n]
	f := File{Name: at.Name, ContentType: at.ContentType, Size: at.Size, SHA256: at.SHA256, Object: at.Object}
	return a.open(ctx, f, func(string) string { return fmt.Sprintf("adjunto-%d", n+1) })
}

// open fills in what the object store knows (type, size) and opens the object; name names a file
// that has none.
func (a *Archive) open(ctx context.Context, f File, name func(contentType string) string) (File, io.ReadCloser, error) {
	obj, err := a.h.Originals.Get(ctx, f.Object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return File{}, nil, ErrNoOriginal
	}
	if err != nil {
		return File{}, nil, fmt.Errorf("open %s: %w", f.Object, err)
	}
	info, err := obj.Info()
	if err != nil {
		obj.Close()
		return File{}, nil, fmt.Errorf("open %s: %w", f.Object, err)
	}
	if f.ContentType == "" && info.Headers != nil {
		f.ContentType = info.Headers.Get("Content-Type")
	}
	if f.ContentType == "" {
		f.ContentType = "application/octet-stream"
	}
	f.Size = int64(info.Size)
	if f.Name == "" {
		f.Name = name(f.ContentType)
	}
	return f, obj, nil
}

// ReadAll returns the bytes of an opened file, at most max (ErrTooLarge beyond).
func ReadAll(rc io.ReadCloser, max int64) ([]byte, error) {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, ErrTooLarge
	}
	return b, nil
}

// ErrTooLarge is returned by ReadAll and Message for bytes over their bound.
var ErrTooLarge = errors.New("archived bytes too large")

func validID(id string) bool {
	_, err := ulid.ParseStrict(id)
	return err == nil
}

// extension gives an original's download a name agents' programs open.
func extension(contentType, channel string) string {
	ct, _, _ := strings.Cut(strings.ToLower(contentType), ";")
	switch strings.TrimSpace(ct) {
	case "message/rfc822":
		return ".eml"
	case "application/pdf":
		return ".pdf"
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/tiff":
		return ".tif"
	case "application/json":
		return ".json"
	case "text/plain":
		return ".txt"
	}
	if channel == channels.MediumEmail {
		return ".eml"
	}
	return ".bin"
}
