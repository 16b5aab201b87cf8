package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
)

// UploadMemo sends a scanned memo to POST /api/v1/memos (multipart: file, optional email and unit).
// It reports whether the server already had this scan (200 instead of 201).
func (c *Client) UploadMemo(ctx context.Context, name string, scan io.Reader, email, unit string) (string, bool, []byte, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", filepath.Base(name))
	if err != nil {
		return "", false, nil, err
	}
	if _, err := io.Copy(fw, scan); err != nil {
		return "", false, nil, fmt.Errorf("read %s: %w", name, err)
	}
	for k, v := range map[string]string{"email": email, "unit": unit} {
		if v != "" {
			_ = mw.WriteField(k, v)
		}
	}
	_ = mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/api/v1/memos", &body)
	if err != nil {
		return "", false, nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	status, raw, err := c.send(req)
	if err != nil {
		return "", false, nil, err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return "", false, raw, apiError(status, raw)
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", false, raw, fmt.Errorf("answer is not JSON: %w", err)
	}
	return out.ID, status == http.StatusOK, raw, nil
}

// cmdMemo uploads a scanned memo (PDF, PNG, JPEG or TIFF); OCR and triage follow on the server.
func (a *app) cmdMemo(args []string) int {
	fs := a.flags("memo", "ARCHIVO [--email CORREO] [--unit UNIDAD]")
	email := fs.String("email", "", "correo del remitente, para avisarle")
	unit := fs.String("unit", "", "unidad que emite el oficio, si no se lee en el membrete")
	pos, code, ok := a.parse(fs, args, 1, true)
	if !ok {
		return code
	}
	f, err := os.Open(pos[0])
	if err != nil {
		fmt.Fprintf(a.stderr, "cauctl: no se pudo abrir %s: %v\n", pos[0], err)
		return exitErr
	}
	defer f.Close()
	c, code, ok := a.client()
	if !ok {
		return code
	}
	// OCR of a long memo takes a while: a minute at least, whatever --timeout says.
	ctx, cancel := context.WithTimeout(context.Background(), max(a.timeout, 2*60e9))
	defer cancel()
	id, dup, raw, err := c.UploadMemo(ctx, pos[0], f, *email, *unit)
	if err != nil {
		return a.fail(err, c, map[string]string{"file": "ARCHIVO", "email": "--email", "unit": "--unit"}, "")
	}
	if a.json {
		a.writeJSON(raw)
		return exitOK
	}
	if dup {
		fmt.Fprintf(a.stdout, "Ese oficio ya estaba registrado: %s\n", id)
	} else {
		fmt.Fprintf(a.stdout, "Oficio registrado: %s (vea «cauctl show %s»)\n", id, id)
	}
	return exitOK
}
